"""Reading raw sockets in the transport and slow-client tests."""

from __future__ import annotations

import socket
import time


def read_to_end(conn: socket.socket, timeout: float = 5.0) -> tuple[bytes, float]:
    """What the server sent before it closed ``conn`` (or ``timeout`` passed), and after how long."""
    started = time.monotonic()
    conn.settimeout(timeout)
    got = b""
    try:
        while chunk := conn.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    return got, time.monotonic() - started
