"""``kb ask``: stream an answer from a running service to the terminal."""

from __future__ import annotations

import os
import sys

import click

__all__ = ["EXAMPLE_QUESTION", "ask_command", "client_url"]

EXAMPLE_QUESTION = "How do I ingest documents?"

# Addresses a server binds to mean "every interface"; a client on the same machine uses loopback.
_ANY_INTERFACE = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to ``host:port``."""
    host = _ANY_INTERFACE.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@click.command("ask")
@click.argument("question")
@click.option(
    "--url",
    help="The service to ask.",
    show_default="$KB_URL, else the configured server.host and server.port",
)
@click.option("--top-k", type=int)
@click.option("--source", "source_prefix", help="Only documents under this path prefix.")
@click.option(
    "--key",
    envvar="KB_API_KEY",
    help="API key sent as `Authorization: Bearer` (the local demo needs none).",
    show_default="$KB_API_KEY",
)
@click.option(
    "--conversation",
    "conversation_id",
    help="Ask a follow-up in this conversation (the id `kb ask` printed after an answer).",
)
def ask_command(
    question: str,
    url: str | None,
    top_k: int | None,
    source_prefix: str | None,
    key: str | None,
    conversation_id: str | None,
) -> None:
    """Ask a running service; the answer streams to the terminal."""
    import httpx

    from app.cli.client import stream_answer

    url = url or os.environ.get("KB_URL") or _configured_url()

    body: dict[str, object] = {"question": question}
    if top_k:
        body["top_k"] = top_k
    if source_prefix:
        body["filters"] = {"source_prefix": source_prefix}
    if conversation_id:
        body["conversation_id"] = conversation_id
    headers = {"Authorization": f"Bearer {key.strip()}"} if key and key.strip() else {}
    failed = False
    try:
        for event in stream_answer(url, body, headers=headers):
            if event.event == "retrieval":
                searched = event.data.get("question")
                click.secho(
                    f"retrieval: {event.data['status']} ({event.data['took_ms']:.0f} ms)"
                    + (f" for {searched!r}" if searched and searched != question else ""),
                    fg="cyan",
                    err=True,
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
                    f"{event.data['timings_ms'].get('total', 0):.0f} ms"
                    + (" · cached" if event.data.get("cached") else ""),
                    fg="cyan",
                    err=True,
                )
                if event.data.get("conversation_id"):
                    click.secho(
                        f"follow up with: kb ask --conversation {event.data['conversation_id']} '…'",
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


def _configured_url() -> str:
    """Where ``kb serve`` listens with the same configuration (``KB_SERVER__PORT`` and all)."""
    from app.config import load_settings
    from app.errors import KBError

    try:
        server = load_settings().server
    except KBError as exc:
        raise click.ClickException(f"{exc.message} (or pass --url)") from None
    return client_url(server.host, server.port)
