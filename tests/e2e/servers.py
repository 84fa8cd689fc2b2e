"""Loopback servers for end-to-end tests: the app under a real uvicorn, and a black-hole store.

Both run in daemon threads with their own event loops, so the test's loop (or a sync test)
talks to them over real sockets exactly like a separate process would, while the embedding
model stays loaded once per session.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

__all__ = ["BlackHole", "LiveServer", "live_server"]


class LiveServer:
    """One ASGI app served by uvicorn on 127.0.0.1 and a kernel-chosen port."""

    def __init__(self, app: Any) -> None:
        # Bind before starting, so the port is known and there is no pick-a-free-port race.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            # As ``kb serve`` does: uvicorn's records go to the app's structured handler, and
            # uvicorn installs no handlers of its own.
            log_config=None,
            access_log=False,
            # Short, so stopping does not wait on a stream a test left open.
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # surfaced by start() instead of dying silently in a thread
            self._error = exc

    def start(self, timeout: float = 60.0) -> LiveServer:
        self._thread.start()
        give_up = time.monotonic() + timeout
        # ``started`` flips after the lifespan (model warm-up, store open) has completed.
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the app did not start: {self._error!r}")
            if time.monotonic() > give_up:
                raise TimeoutError(f"the app did not start within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError("uvicorn did not stop within 15 s")


@contextmanager
def live_server(app: Any) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


class BlackHole:
    """A TCP server that accepts connections and never sends a byte: a store that hangs.

    Accepting (rather than only listening) matters: with a full backlog, new connections would
    fail to open, which is a different fault (unreachable, not slow).
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_forever, name="black-hole", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read from, never written to

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(2)
        self._listener.close()
        for conn in self.accepted:
            conn.close()
