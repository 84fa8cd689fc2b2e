"""The ``kb`` command: one module per subcommand (ingest, serve, ask, eval, keys).

The top of the import graph: it may import everything, nothing imports it. Subcommands import
their heavy dependencies (model, store, HTTP app) when they run, so ``kb --help`` stays fast.
"""

from __future__ import annotations

import os

import click

from app.cli.ask import ask_command
from app.cli.eval import eval_command
from app.cli.feedback import feedback_command
from app.cli.ingest import ingest_command
from app.cli.keys import keys_command
from app.cli.prompts import prompts_command
from app.cli.serve import serve_command
from app.cli.store import store_command

__all__ = ["cli", "main"]


@click.group()
def cli() -> None:
    """Internal knowledge base: ingest documents, serve grounded answers."""


for _command in (
    ingest_command,
    serve_command,
    ask_command,
    eval_command,
    keys_command,
    prompts_command,
    feedback_command,
    store_command,
):
    cli.add_command(_command)


def main() -> None:
    # Nothing may be fetched from a model hub unless the configuration allows it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cli()
