"""The ``kb`` command: ingest, serve, ask, eval."""

from __future__ import annotations

import os
import sys

import click

from app.evaluation.command import eval_command
from ingest.command import ingest_command

__all__ = ["cli", "main"]


@click.group()
def cli() -> None:
    """Internal knowledge base: ingest documents, serve grounded answers."""


cli.add_command(ingest_command)
cli.add_command(eval_command)


@cli.command("serve")
@click.option("--host", help="Interface to bind (default: server.host).")
@click.option("--port", type=int, help="Port (default: server.port).")
@click.option("--workers", type=int, help="Worker processes (default: server.workers; >1 needs QDRANT_URL).")
def serve_command(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API (POST /ask, /health/*, /schema)."""
    import uvicorn

    from app.config import load_settings
    from app.errors import KBError

    overrides = {"server": {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}}
    try:
        settings = load_settings(overrides=overrides)
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    # Workers are separate processes that build their own app: hand them the overrides.
    for key, value in overrides["server"].items():
        os.environ[f"KB_SERVER__{key.upper()}"] = str(value)
    uvicorn.run(
        "app.http:create_app", factory=True, host=settings.server.host, port=settings.server.port,
        workers=settings.server.workers, log_level="warning", timeout_graceful_shutdown=5,
    )


@cli.command("ask")
@click.argument("question")
@click.option("--url", default=lambda: os.environ.get("KB_URL", "http://127.0.0.1:8000"), show_default="$KB_URL or http://127.0.0.1:8000")
@click.option("--top-k", type=int)
@click.option("--source", "source_prefix", help="Only documents under this path prefix.")
def ask_command(question: str, url: str, top_k: int | None, source_prefix: str | None) -> None:
    """Ask a running service; the answer streams to the terminal."""
    import httpx

    from app.client import stream_answer

    body: dict[str, object] = {"question": question}
    if top_k:
        body["top_k"] = top_k
    if source_prefix:
        body["filters"] = {"source_prefix": source_prefix}
    failed = False
    try:
        for event in stream_answer(url, body):
            if event.event == "retrieval":
                click.secho(f"retrieval: {event.data['status']} ({event.data['took_ms']:.0f} ms)", fg="cyan", err=True)
                for source in event.data["sources"]:
                    where = source["source"] + (f" p.{source['page']}" if source.get("page") else "")
                    click.secho(f"  [{source['id']}] {source['title']} — {where}", fg="cyan", err=True)
                click.echo(err=True)
            elif event.event == "delta":
                click.echo(event.data["text"], nl=False)
                sys.stdout.flush()
            elif event.event == "done":
                click.echo()
                click.secho(
                    f"cited {event.data['citations']} · {event.data['model']} · prompt {event.data['prompt_version']} · "
                    f"{event.data['timings_ms'].get('total', 0):.0f} ms", fg="cyan", err=True,
                )
            elif event.event == "error":
                click.echo()
                click.secho(f"error: {event.data.get('code')}: {event.data.get('message')}", fg="red", err=True)
                failed = True
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the service at {url}: {exc}") from None
    if failed:
        sys.exit(1)


def main() -> None:
    # Nothing may be fetched from a model hub unless the configuration allows it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cli()
