"""``app.cli.transport``: the read timeouts and the connection cap, on a real uvicorn on loopback.

A tiny ASGI app stands in for the service (the guard sits below any app); the server is uvicorn
with ``GuardedProtocolFactory`` as its ``http``, exactly as ``kb serve`` configures it, in a
thread of this process, or in a spawned process as ``kb serve --workers N`` runs it.
"""

from __future__ import annotations

import multiprocessing
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import uvicorn
from structlog.testing import capture_logs

from app.cli.transport import GuardedProtocolFactory, Listener, TransportLimits, transport_limits
from app.config import load_settings
from app.errors import ConfigError
from app.settings import ServerSettings
from tests.sockets import read_to_end

pytestmark = pytest.mark.unit

HEAD_S = 0.4
BODY_S = 0.4


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/early`` answers before reading the body; anything else reads the whole body first."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/early":
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def limits(**overrides: Any) -> TransportLimits:
    values: dict[str, Any] = {
        "header_timeout_s": HEAD_S,
        "body_timeout_s": BODY_S,
        "max_connections": 100,
        "accept_burst": 8,
        "log_interval_s": 60.0,
    }
    values.update(overrides)
    return TransportLimits(**values)


def _config(guard_limits: TransportLimits, factory: GuardedProtocolFactory | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        cast(Any, tiny_app),
        http=cast(Any, factory or GuardedProtocolFactory(guard_limits)),
        backlog=guard_limits.accept_burst,
        lifespan="off",
        log_level="warning",
        log_config=None,
        timeout_keep_alive=30,  # longer than the guard's timeouts: what closes is the guard
        timeout_graceful_shutdown=1,
    )


def _listener() -> Listener:
    sock = Listener(socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def served(guard_limits: TransportLimits, factory: GuardedProtocolFactory | None = None) -> Iterator[int]:
    sock = _listener()
    server = uvicorn.Server(_config(guard_limits, factory))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        give_up = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < give_up and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def is_open(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return bool(conn.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        conn.setblocking(True)


def get(conn: socket.socket, path: str = "/") -> bytes:
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    got = b""
    while not got.endswith(b"ok"):
        chunk = conn.recv(4096)
        assert chunk, got
        got += chunk
    return got


# -- the limits ------------------------------------------------------------------------------


def test_every_connection_has_nagle_off_so_a_response_in_pieces_is_not_held_back() -> None:
    factory = GuardedProtocolFactory(limits())
    with served(limits(), factory) as port, connect(port) as conn:
        assert get(conn).endswith(b"ok")
        guard = factory._guard
        assert guard is not None and len(guard.open) == 1
        (protocol,) = guard.open
        served_socket = protocol.transport.get_extra_info("socket")
        assert served_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_the_cap_defaults_to_the_open_file_limit_minus_the_reserve() -> None:
    resolved = transport_limits(ServerSettings(open_files_reserve=128), open_files=512)
    assert resolved.max_connections == 384
    assert resolved.accept_burst * 3 <= 128  # a few bursts fit in the reserve


def test_a_cap_above_what_the_open_file_limit_holds_fails_early() -> None:
    with pytest.raises(ConfigError, match=r"max_connections \(500\).*ulimit -n 628"):
        transport_limits(ServerSettings(max_connections=500), open_files=512)
    assert transport_limits(ServerSettings(max_connections=300), open_files=512).max_connections == 300


def test_an_open_file_limit_that_leaves_no_room_fails_early() -> None:
    with pytest.raises(ConfigError, match=r"open-file limit \(100"):
        transport_limits(ServerSettings(), open_files=100)


@pytest.mark.parametrize(
    "server",
    [{"header_timeout_s": 0}, {"body_timeout_s": -1}, {"max_connections": 0}, {"open_files_reserve": 1}],
)
def test_bad_server_settings_fail_when_loaded(server: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        load_settings(environ={}, overrides={"server": server})


def test_the_factory_travels_to_a_worker_without_its_guard() -> None:
    factory = GuardedProtocolFactory(limits())
    factory._guard = object()  # type: ignore[assignment]  # as after a first connection
    copy = pickle.loads(pickle.dumps(factory))
    assert copy.limits == factory.limits and copy._guard is None


# -- the timeouts ----------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_or_half_a_head_is_closed_after_the_header_timeout() -> None:
    with served(limits()) as port, connect(port) as idle, connect(port) as partial:
        partial.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        idle_got, idle_after = read_to_end(idle)
        partial_got, partial_after = read_to_end(partial)
    assert idle_got == b"" and partial_got == b""
    assert HEAD_S * 0.9 <= idle_after < HEAD_S + 3
    assert partial_after < HEAD_S + 3


def test_a_head_dripped_byte_by_byte_is_still_cut_at_the_header_timeout() -> None:
    with served(limits()) as port, connect(port) as conn:
        started = time.monotonic()
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: a-long-host-name-sent-slowly\r\n":
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(HEAD_S / 8)
            if not is_open(conn):
                closed = True
                break
        took = time.monotonic() - started
    assert closed and took < HEAD_S * 3, took


def test_the_next_request_on_a_kept_alive_connection_has_its_own_header_timeout() -> None:
    with served(limits()) as port, connect(port) as conn:
        assert get(conn).startswith(b"HTTP/1.1 200")
        time.sleep(HEAD_S * 2)  # idle between requests: uvicorn's keep-alive (30 s here) decides
        assert get(conn).startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET / HTTP/1.1\r\n")  # half of a third request
        got, after = read_to_end(conn)
    assert got == b"" and HEAD_S * 0.9 <= after < HEAD_S + 3


def test_a_body_that_stops_arriving_is_answered_408_and_the_app_sees_the_client_go() -> None:
    with served(limits()) as port, connect(port) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        got, after = read_to_end(conn)
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), got
    assert b"connection: close" in got and b'"code":"request_timeout"' in got
    assert BODY_S * 0.9 <= after < BODY_S + 3


def test_a_body_that_keeps_arriving_is_not_cut_however_long_it_takes() -> None:
    # Pauses a quarter of the timeout, so that a loaded machine stretching a sleep cannot make
    # one of them a real stall; together they outlast it.
    body_s = 1.0
    with served(limits(body_timeout_s=body_s)) as port, connect(port) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
        for byte in b"abcde":  # in all longer than the body timeout, each pause shorter
            time.sleep(body_s / 4)
            conn.sendall(bytes([byte]))
        conn.settimeout(5)
        got = conn.recv(4096)
    assert got.startswith(b"HTTP/1.1 200"), got


def test_a_body_left_unfinished_after_an_early_answer_is_closed_without_a_408() -> None:
    with served(limits()) as port, connect(port) as conn:
        conn.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        got, after = read_to_end(conn)
    assert got.startswith(b"HTTP/1.1 200") and b"408" not in got, got
    assert after < BODY_S + 3


# -- the cap ---------------------------------------------------------------------------------


def test_at_the_cap_the_connection_waiting_longest_for_a_head_makes_room() -> None:
    with served(limits(max_connections=3, header_timeout_s=30)) as port:
        first, second, third = connect(port), connect(port), connect(port)
        try:
            time.sleep(0.5)  # accepted, in this order (time to spare on a loaded machine)
            with connect(port) as fourth, capture_logs() as logs:
                assert get(fourth).startswith(b"HTTP/1.1 200")
            first_got, _ = read_to_end(first)
            assert first_got == b""  # closed, without a response
            assert is_open(second) and is_open(third)
        finally:
            for conn in (first, second, third):
                conn.close()
    assert [e["reason"] for e in logs if e["event"] == "connections_closed"] == ["evicted"]


def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused_at_once() -> None:
    body = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"
    with served(limits(max_connections=2, body_timeout_s=30)) as port:
        busy = [connect(port), connect(port)]
        try:
            for conn in busy:
                conn.sendall(body)
            time.sleep(0.5)  # both accepted and reading their bodies
            with connect(port) as refused:
                got, after = read_to_end(refused)
            assert got.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in got, got
            assert after < 1.0
            assert all(is_open(conn) for conn in busy)
        finally:
            for conn in busy:
                conn.close()


def test_closings_are_logged_once_per_kind_and_interval_with_their_count() -> None:
    with served(limits(log_interval_s=60.0)) as port, capture_logs() as logs:
        conns = [connect(port) for _ in range(5)]
        try:
            for conn in conns:
                read_to_end(conn)
        finally:
            for conn in conns:
                conn.close()
    lines = [e for e in logs if e["event"] == "connections_closed"]
    assert [(e["reason"], e["count"]) for e in lines] == [("idle", 1)]  # the other 4 wait their turn


# -- several workers -------------------------------------------------------------------------


def _serve_in_child(guard_limits_factory: GuardedProtocolFactory, sock: Listener, seconds: float) -> None:
    config = uvicorn.Config(
        cast(Any, tiny_app),
        http=cast(Any, guard_limits_factory),
        lifespan="off",
        log_level="critical",
        log_config=None,
    )
    server = uvicorn.Server(config)
    threading.Timer(seconds, lambda: setattr(server, "should_exit", True)).start()
    server.run(sockets=[sock])


def test_a_spawned_worker_gets_the_listener_and_the_guard() -> None:
    sock = _listener()
    sock.listen(1)
    child = multiprocessing.get_context("spawn").Process(
        target=_serve_in_child, args=(GuardedProtocolFactory(limits()), sock, 90.0), daemon=True
    )
    child.start()
    try:
        port = sock.getsockname()[1]
        give_up = time.monotonic() + 60  # a spawned interpreter's imports, on a loaded machine
        while True:  # the kernel queues connections before the child serves: wait for an answer
            with connect(port) as conn:
                conn.settimeout(2)
                try:
                    if get(conn).startswith(b"HTTP/1.1 200"):
                        break
                except (TimeoutError, AssertionError):
                    pass
            assert time.monotonic() < give_up, "the spawned worker never answered"
        with connect(port) as idle:
            got, after = read_to_end(idle)
        assert got == b"" and HEAD_S * 0.9 <= after < HEAD_S + 3  # the guard runs in the child
    finally:
        child.terminate()
        child.join(10)
        sock.close()
