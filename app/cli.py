"""The ``kb`` command."""

from __future__ import annotations

import os

import click

from ingest.command import ingest_command

__all__ = ["cli", "main"]


@click.group()
def cli() -> None:
    """Internal knowledge base: ingest documents, serve grounded answers."""


cli.add_command(ingest_command)


def main() -> None:
    # Nothing may be fetched from a model hub unless the configuration allows it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli()
