"""The ``kb`` command: one module per subcommand (ingest, serve, ask, eval, keys, ...).

The top of the import graph: it may import everything, nothing imports it. A subcommand's module
is imported only when that subcommand runs (or ``--help`` lists them all): the modules of others
pull in the model API SDKs, the store client and telemetry, and ``kb serve`` must bind its port
and fail fast on a busy one before any of that loads.
"""

from __future__ import annotations

import importlib
import os

import click

__all__ = ["cli", "main"]

_COMMANDS = {
    "ingest": "app.cli.ingest:ingest_command",
    "serve": "app.cli.serve:serve_command",
    "ask": "app.cli.ask:ask_command",
    "eval": "app.cli.eval:eval_command",
    "keys": "app.cli.keys:keys_command",
    "prompts": "app.cli.prompts:prompts_command",
    "feedback": "app.cli.feedback:feedback_command",
    "store": "app.cli.store:store_command",
}
"""Subcommand name -> ``module:attribute`` of its click command, in the order help lists them."""


class _LazyGroup(click.Group):
    """A click group that imports a subcommand's module when the subcommand is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=_LazyGroup)
def cli() -> None:
    """Internal knowledge base: ingest documents, serve grounded answers."""


def main() -> None:
    # Nothing may be fetched from a model hub unless the configuration allows it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cli()
