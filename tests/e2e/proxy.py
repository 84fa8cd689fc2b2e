"""A loopback TCP proxy whose cable can be pulled: every open connection is cut at once.

The browser talks to the app through it, so a test can lose the network in the middle of a
streamed answer the way a dropped Wi-Fi or a killed proxy would, not by closing the stream
politely; or make the network go silent (nothing forwarded, nothing closed), as a dead route does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["PullablePlug"]


class PullablePlug:
    """Forwards ``127.0.0.1:<port>`` to ``target_port``; ``pull()`` cuts every connection,
    ``freeze()`` stops forwarding while keeping them open."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._frozen = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="pullable-plug", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PullablePlug:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(2)
        self._listener.close()
        self.pull()

    def pull(self) -> None:
        """Cut every connection open now, mid-response; new ones are still accepted."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # close() alone would wait for the pump blocked in recv() on this socket;
                # shutdown() wakes it at once.
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def freeze(self) -> None:
        """From now on, bytes are dropped in both directions; no connection is closed."""
        self._frozen.set()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            source.settimeout(None)
            while chunk := source.recv(65536):
                if not self._frozen.is_set():
                    sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
