"""``kb serve``: the HTTP API under uvicorn.

The port is bound first, before the model loads, so a busy port fails in a moment instead of after
the slow start-up; the bound socket is then handed to uvicorn, so nothing can take the port in
between. Connections are served by ``app.cli.transport``'s guarded protocol: read timeouts and a
connection cap under the open-file limit (docs/operations.md, "Slow clients and connection
limits").
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from typing import TYPE_CHECKING, Any, cast

import click

from app.cli.ask import EXAMPLE_QUESTION, client_url

if TYPE_CHECKING:
    from app.cli.transport import TransportLimits

__all__ = ["bind_listener", "serve_command"]


@click.command("serve")
@click.option("--host", help="Interface to bind (default: server.host).")
@click.option("--port", type=int, help="Port (default: server.port).")
@click.option("--workers", type=int, help="Worker processes (default: server.workers; >1 needs QDRANT_URL).")
@click.option("--check", is_flag=True, help="Only check the settings and that the port is free, then exit.")
def serve_command(host: str | None, port: int | None, workers: int | None, check: bool) -> None:
    """Serve the HTTP API (POST /ask, /health/*, /schema). Ctrl-C stops it."""
    from app.config import load_settings
    from app.errors import KBError

    overrides = {
        "server": {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    }
    try:
        settings = load_settings(overrides=overrides)
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    server = settings.server
    listener = bind_listener(server.host, server.port)
    from app.cli.transport import transport_limits

    try:  # a cap the open-file limit cannot hold fails here, before the model
        limits = transport_limits(server)
    except KBError as exc:
        listener.close()
        raise click.ClickException(exc.message) from None
    if check:
        listener.close()
        click.echo(f"kb serve: {server.host}:{server.port} is free", err=True)
        return
    try:
        # Workers are separate processes that build their own app: hand them the overrides.
        for key, value in overrides["server"].items():
            os.environ[f"KB_SERVER__{key.upper()}"] = str(value)
        url = client_url(server.host, server.port)
        click.echo(
            f"kb serve: listening on {server.host}:{server.port}; loading the model, then answering "
            f"on {url} (Ctrl-C stops)\n"
            f"  ask from another terminal: {_kb_command()} ask --url {url} {EXAMPLE_QUESTION!r}\n"
            f"  access: {settings.access.summary}",
            err=True,
        )
        # One structured format for this process's own lines (uvicorn's supervisor included);
        # each worker's app configures its own the same way.
        from app.logs import configure_logging

        configure_logging(json_lines=settings.env == "production")
        from app.observability import worker_metrics

        # Several workers: Prometheus multiprocess mode, and the metrics port served from here.
        with worker_metrics(settings.observability, workers=server.workers, environ=os.environ):
            _run(listener, server.workers, limits)
    finally:
        listener.close()


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` now, or fail with a message that says what to do."""
    from app.cli.transport import Listener

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = Listener(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart need not wait for the previous run's connections to time out.
    # A port another process listens on is refused all the same.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is already in use (is another `kb serve` running?). "
                "Stop that process, or choose another port: --port N or KB_SERVER__PORT=N."
            ) from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listener


def _run(listener: socket.socket, workers: int, limits: TransportLimits) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from app.cli.transport import GuardedProtocolFactory

    config = uvicorn.Config(
        "app.http:create_app",
        factory=True,
        workers=workers,
        # uvicorn calls ``http`` like a protocol class; the factory travels to spawned workers.
        http=cast(Any, GuardedProtocolFactory(limits)),
        # asyncio accepts this many connections per wake-up before the cap can close any: it
        # must fit in the open files kept back (the kernel's queue stays long: ``Listener``).
        backlog=limits.accept_burst,
        log_level="warning",
        log_config=None,  # uvicorn's records go through the structured root handler
        timeout_graceful_shutdown=5,
        server_header=False,  # no banner naming the server software
    )
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[listener]).run()
            return
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # Ctrl-C is how it is stopped, not a failure
        return
    if not server.started:  # the lifespan failed and said why; the exit status says so too
        sys.exit(3)


def _kb_command() -> str:
    """How to run ``kb`` again from here: as invoked (``.venv/bin/kb``) unless it is on the PATH."""
    invoked = sys.argv[0]
    if os.path.basename(invoked) != "kb" or shutil.which("kb") == os.path.abspath(invoked):
        return "kb"
    return invoked
