"""Slow clients cannot exhaust ``kb serve``: read timeouts and the connection cap, end to end.

One real ``kb serve`` subprocess (real model, an empty data folder) under ``ulimit -n 512``, with
short read timeouts. 600 slow connections are more than the process could hold open before
(each is a file descriptor); with the cap below the limit, the ones waiting longest for a request
head make room for real requests, and the timeouts end the rest.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sockets import read_to_end

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KB = Path(sys.executable).with_name("kb")
NOFILE = 512
SLOW = 600
HEADER_TIMEOUT_S = 5.0
BODY_TIMEOUT_S = 3.0
HEAD = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the blank line never comes
BODY = (
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100\r\n\r\n{"question": "How'
)


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def said(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _limit_open_files() -> None:  # in the child, before exec: `ulimit -n 512`
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def _health(port: int, timeout: float = 5.0) -> float | None:
    """Seconds for a whole ``GET /health/live`` on a new connection; None if it did not answer."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := conn.recv(4096):
                got += chunk
    except OSError:
        return None
    return time.monotonic() - started if got.startswith(b"HTTP/1.1 200") else None


@pytest.fixture(scope="module")
def own_file_limit() -> Iterator[None]:
    """This process opens 600 sockets: raise its own soft limit if it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW + 400
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the hard open-file limit ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, own_file_limit: None) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("slow-clients")
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KB_") and k != "QDRANT_URL"}
    environ.update(
        KB_DATA_DIR=str(work / "data"),
        KB_LIMITS__ENABLED="false",  # one address asking many times is this test, not abuse
        KB_SERVER__PORT=str(port),
        KB_SERVER__HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        KB_SERVER__BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    log = work / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(KB), "serve"],
            env=environ,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=_limit_open_files,
        )
    try:
        give_up = time.monotonic() + 120
        while _health(port, timeout=1.0) is None:
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < give_up, "kb serve did not answer within 120 s"
            time.sleep(0.3)
        yield Served(process, port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.mark.timeout(180)
def test_health_answers_within_a_second_with_600_slow_connections_open(served: Served) -> None:
    slow: list[socket.socket] = []
    try:
        for i in range(SLOW):
            conn = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            slow.append(conn)
            conn.sendall([b"", HEAD, BODY][i % 3])  # nothing, half a head, half a body
        time.sleep(0.5)  # the server takes in the burst
        held = served.open_files()
        probes = [_health(served.port) for _ in range(5)]
        held_after = served.open_files()
        alive = served.process.poll() is None
    finally:
        for conn in slow:
            conn.close()

    assert alive, served.said()
    # It holds hundreds of them (the probes were answered next to them, not instead of them),
    # and stays under its open-file limit.
    assert 300 <= held < NOFILE, held
    assert held_after < NOFILE, held_after
    assert all(p is not None for p in probes), probes
    assert max(p for p in probes if p is not None) < 1.0, probes
    # More than the cap came: the ones waiting longest for a request head made room, and the
    # log said so in one line, not one per connection.
    said = served.said()
    assert re.search(r"connections_closed.*reason=evicted", said), said[-3000:]
    assert said.count("reason=evicted") < 20
    assert "out of system resource" not in said  # accept() never ran out of descriptors


@pytest.mark.timeout(60)
def test_idle_and_partial_head_connections_are_closed_after_the_header_timeout(served: Served) -> None:
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as idle,
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as partial,
    ):
        partial.sendall(HEAD)
        started = time.monotonic()
        idle_got, idle_after = read_to_end(idle, HEADER_TIMEOUT_S + 20)
        partial_got, _ = read_to_end(partial, HEADER_TIMEOUT_S + 20)
        partial_after = time.monotonic() - started

    # Closed, without a response (nothing was asked), once the timeout passed and not long after.
    assert idle_got == b"" and partial_got == b"", (idle_got, partial_got)
    assert HEADER_TIMEOUT_S * 0.9 <= idle_after < HEADER_TIMEOUT_S + 15, idle_after
    assert HEADER_TIMEOUT_S * 0.9 <= partial_after < HEADER_TIMEOUT_S + 15, partial_after


@pytest.mark.timeout(60)
def test_a_body_that_stops_arriving_is_answered_408_and_closed(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as conn:
        conn.sendall(BODY)
        got, after = read_to_end(conn, BODY_TIMEOUT_S + 20)

    assert got.startswith(b"HTTP/1.1 408 "), got
    assert b"connection: close" in got.lower()
    assert b'"request_timeout"' in got
    assert BODY_TIMEOUT_S * 0.9 <= after < BODY_TIMEOUT_S + 15, after


@pytest.mark.timeout(60)
def test_a_complete_request_after_slow_ones_is_answered_normally(served: Served) -> None:
    """The guard times the reading only: an ordinary request on a kept-alive connection works."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        for _ in range(2):
            conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while not got.endswith(b'{"status":"live"}'):
                chunk = conn.recv(4096)
                assert chunk, got  # the server closed a connection it should have kept
                got += chunk
            assert got.startswith(b"HTTP/1.1 200"), got
