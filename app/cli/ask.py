"""``kb ask``: stream an answer from a running service to the terminal."""

from __future__ import annotations

import os
import sys

import click

__all__ = ["ask_command"]


@click.command("ask")
@click.argument("question")
@click.option(
    "--url",
    default=lambda: os.environ.get("KB_URL", "http://127.0.0.1:8000"),
    show_default="$KB_URL or http://127.0.0.1:8000",
)
@click.option("--top-k", type=int)
@click.option("--source", "source_prefix", help="Only documents under this path prefix.")
def ask_command(question: str, url: str, top_k: int | None, source_prefix: str | None) -> None:
    """Ask a running service; the answer streams to the terminal."""
    import httpx

    from app.cli.client import stream_answer

    body: dict[str, object] = {"question": question}
    if top_k:
        body["top_k"] = top_k
    if source_prefix:
        body["filters"] = {"source_prefix": source_prefix}
    failed = False
    try:
        for event in stream_answer(url, body):
            if event.event == "retrieval":
                click.secho(
                    f"retrieval: {event.data['status']} ({event.data['took_ms']:.0f} ms)", fg="cyan", err=True
                )
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
                    f"{event.data['timings_ms'].get('total', 0):.0f} ms",
                    fg="cyan",
                    err=True,
                )
            elif event.event == "error":
                click.echo()
                click.secho(
                    f"error: {event.data.get('code')}: {event.data.get('message')}", fg="red", err=True
                )
                failed = True
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the service at {url}: {exc}") from None
    if failed:
        sys.exit(1)
