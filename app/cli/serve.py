"""``kb serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import os

import click

__all__ = ["serve_command"]


@click.command("serve")
@click.option("--host", help="Interface to bind (default: server.host).")
@click.option("--port", type=int, help="Port (default: server.port).")
@click.option("--workers", type=int, help="Worker processes (default: server.workers; >1 needs QDRANT_URL).")
def serve_command(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API (POST /ask, /health/*, /schema)."""
    import uvicorn

    from app.config import load_settings
    from app.errors import KBError

    overrides = {
        "server": {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    }
    try:
        settings = load_settings(overrides=overrides)
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    # Workers are separate processes that build their own app: hand them the overrides.
    for key, value in overrides["server"].items():
        os.environ[f"KB_SERVER__{key.upper()}"] = str(value)
    uvicorn.run(
        "app.http:create_app",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
