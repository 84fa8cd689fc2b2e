"""``kb serve``'s connections: read timeouts and a connection cap in front of uvicorn's HTTP.

uvicorn closes a connection idle *between* requests (``timeout_keep_alive``) but has no timeout
for reading one: a client that connects and sends nothing, sends half a request head, or stops
half-way through a body is held for ever, each holding a file descriptor. Enough of them and the
process reaches its open-file limit, after which asyncio's ``accept()`` fails and stops accepting
for a second at a time: every client is locked out. ``GuardedH11Protocol`` (uvicorn's h11
protocol, timed) closes such connections:

- a request head (request line and headers) not complete within ``server.header_timeout_s`` of
  connecting, or of its first byte after a previous response: closed (``idle`` when it sent
  nothing, ``header_timeout`` otherwise);
- a request body that stops arriving for ``server.body_timeout_s``: answered 408 and closed;
- at ``server.max_connections`` open connections, the one that has waited longest for a request
  head is closed to make room for a new one (``evicted``); when every open connection is busy
  with a request, the new one is refused at once with a 503 (``refused``).

The cap defaults to the open-file limit minus ``server.open_files_reserve``, so it is reached
before the process runs out of descriptors. asyncio accepts up to ``backlog`` connections per
wake-up, and they reach the protocol (and the cap) a few loop iterations later, so that number
(``TransportLimits.accept_burst``) is kept to a small part of the reserve; ``Listener`` keeps the kernel's queue of pending connections long all the
same, so a burst of real clients is queued, not dropped.

Each kind of closing is logged as one structured line per interval with its count, never one line
per connection, and counted in ``kb_connections_closed`` when the app has metrics.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import socket
import time
from multiprocessing.reduction import DupFd
from typing import Any, Literal

import h11
import msgspec
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from app.errors import ConfigError
from app.settings import ServerSettings

__all__ = [
    "ClosingKind",
    "ConnectionGuard",
    "GuardedH11Protocol",
    "GuardedProtocolFactory",
    "Listener",
    "TransportLimits",
    "open_files_limit",
    "transport_limits",
]

log = structlog.get_logger("kb.server")

ClosingKind = Literal["idle", "header_timeout", "body_timeout", "evicted", "refused"]

_KERNEL_QUEUE = 2048  # uvicorn's default backlog: pending connections the kernel holds
_MIN_CONNECTIONS = 16
_UNLIMITED_FILES = 1 << 20  # what an unlimited RLIMIT_NOFILE is taken to be

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class TransportLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The resolved limits one worker process enforces (picklable: workers are spawned)."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    accept_burst: int
    """Connections asyncio accepts per wake-up (uvicorn's ``backlog``): inside the reserve."""
    log_interval_s: float = 10.0
    """At most one log line per kind of closing per this interval."""


def open_files_limit() -> int:
    """This process's soft ``RLIMIT_NOFILE`` (what ``ulimit -n`` says)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED_FILES if soft == resource.RLIM_INFINITY else int(soft)


def transport_limits(server: ServerSettings, *, open_files: int | None = None) -> TransportLimits:
    """The limits for ``server`` under ``open_files`` (default: this process's limit, which the
    workers inherit); ``ConfigError`` when the cap would not be reached before the files run out."""
    open_files = open_files_limit() if open_files is None else open_files
    reserve = server.open_files_reserve
    room = open_files - reserve
    if server.max_connections is None:
        if room < _MIN_CONNECTIONS:
            raise ConfigError(
                f"the open-file limit ({open_files}, ulimit -n) leaves {max(room, 0)} connections after "
                f"server.open_files_reserve ({reserve}); raise it (ulimit -n {reserve + 256}) or lower "
                "the reserve"
            )
        cap = room
    elif server.max_connections > room:
        raise ConfigError(
            f"server.max_connections ({server.max_connections}) is above the open-file limit "
            f"({open_files}, ulimit -n) minus server.open_files_reserve ({reserve}): the process would "
            f"run out of files before the cap closes a connection. Raise the limit (ulimit -n "
            f"{server.max_connections + reserve}) or set max_connections to at most {max(room, 0)}"
        )
    else:
        cap = server.max_connections
    return TransportLimits(
        header_timeout_s=server.header_timeout_s,
        body_timeout_s=server.body_timeout_s,
        max_connections=cap,
        # Accepted sockets reach the protocol (and the cap) two or three loop iterations later,
        # and asyncio accepts a burst at each: a few bursts must fit in the reserve.
        accept_burst=max(4, min(_KERNEL_QUEUE, reserve // 8)),
    )


class Listener(socket.socket):
    """A listening socket whose kernel queue stays ``queue`` long whatever ``listen`` is asked.

    asyncio uses one number, the backlog, both for ``listen()`` and for how many connections it
    accepts per wake-up; this lets the second be small while the first is not. It survives being
    handed to a spawned worker process (``kb serve --workers N``).
    """

    def __init__(
        self,
        family: int,
        kind: int = socket.SOCK_STREAM,
        proto: int = 0,
        *,
        queue: int = _KERNEL_QUEUE,
        fileno: int | None = None,
    ) -> None:
        super().__init__(family, kind, proto, fileno)
        self.queue = queue

    def listen(self, backlog: int = _KERNEL_QUEUE, /) -> None:
        super().listen(max(backlog, self.queue))

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _rebuild_listener, (DupFd(self.fileno()), self.family, self.type, self.proto, self.queue)


def _rebuild_listener(df: Any, family: int, kind: int, proto: int, queue: int) -> Listener:
    return Listener(family, kind, proto, queue=queue, fileno=df.detach())


class _ClosingLog:
    """One line per kind of closing per interval, with how many there were, and the metric."""

    def __init__(self, interval_s: float, metrics: Any) -> None:
        self.interval_s = interval_s
        self.metrics = metrics  # the app's Metrics once known, else None
        self.pending: dict[ClosingKind, int] = {}
        self.last_logged: dict[ClosingKind, float] = {}
        self.flush_handle: asyncio.TimerHandle | None = None

    def closed(self, kind: ClosingKind, guard: ConnectionGuard) -> None:
        if self.metrics is not None:
            self.metrics.connection_closed(kind)
        self.pending[kind] = self.pending.get(kind, 0) + 1
        now = time.monotonic()
        if now - self.last_logged.get(kind, -self.interval_s) >= self.interval_s:
            self._log(kind, guard, now)
        elif self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(self.interval_s, self._flush, guard)

    def _flush(self, guard: ConnectionGuard) -> None:
        self.flush_handle = None
        now = time.monotonic()
        for kind in list(self.pending):
            self._log(kind, guard, now)

    def _log(self, kind: ClosingKind, guard: ConnectionGuard, now: float) -> None:
        count = self.pending.pop(kind, 0)
        if not count:
            return
        self.last_logged[kind] = now
        log.warning(
            "connections_closed",
            reason=kind,
            count=count,
            window_s=self.interval_s,
            open=len(guard.open),
            max_connections=guard.limits.max_connections,
        )


class ConnectionGuard:
    """The open connections of one server: the cap, who is evicted first, the closings' log."""

    def __init__(self, limits: TransportLimits, *, metrics: Any = None) -> None:
        self.limits = limits
        self.open: set[GuardedH11Protocol] = set()
        # Connections waiting for a request head, longest-waiting first (dicts keep order).
        self.waiting: dict[GuardedH11Protocol, None] = {}
        self.log = _ClosingLog(limits.log_interval_s, metrics)
        self.metrics_resolved = metrics is not None

    def admit(self, protocol: GuardedH11Protocol) -> bool:
        """Make room for ``protocol``: False when it must be refused."""
        if len(self.open) >= self.limits.max_connections:
            if not self.waiting:
                self.closed("refused")
                return False
            oldest = next(iter(self.waiting))
            oldest.close_quietly()
            self.release(oldest)
            self.closed("evicted")
        self.open.add(protocol)
        self.waiting[protocol] = None
        return True

    def wait_for_head(self, protocol: GuardedH11Protocol) -> None:
        self.waiting.pop(protocol, None)
        if protocol in self.open:
            self.waiting[protocol] = None

    def busy(self, protocol: GuardedH11Protocol) -> None:
        self.waiting.pop(protocol, None)

    def release(self, protocol: GuardedH11Protocol) -> None:
        self.open.discard(protocol)
        self.waiting.pop(protocol, None)

    def closed(self, kind: ClosingKind) -> None:
        self.log.closed(kind, self)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout, a body timeout and the guard's cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        guard: ConnectionGuard,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard
        self._phase: Literal["head", "body", "busy"] = "head"
        self._head_started = False  # a byte of the coming request head has arrived
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        if not self.guard.admit(self):
            body = b'{"error":{"code":"server_busy","message":"too many open connections; retry shortly"}}'
            transport.write(_REFUSED % (len(body), body))
            transport.close()
            return
        self._head_timer = self.loop.call_later(self.guard.limits.header_timeout_s, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._phase == "head":
            self._head_started = True
            if self._head_timer is None:  # the first byte of a request after a previous one
                self._head_timer = self.loop.call_later(
                    self.guard.limits.header_timeout_s, self._head_timed_out
                )
        super().data_received(data)
        self._follow(progress=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.guard.release(self)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start the next, pipelined, request
        self._follow(progress=False)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_timers()  # the connection is no longer HTTP's to time
        self.guard.release(self)
        super().handle_websocket_upgrade(event)

    # -- the request's phase and its timers ---------------------------------------------------

    def _follow(self, *, progress: bool) -> None:
        """Bring the phase and timers up to date with the request h11 has parsed."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or (cycle.response_complete and not cycle.more_body):
            phase: Literal["head", "body", "busy"] = "head"
        elif cycle.more_body and not cycle.disconnected:
            phase = "body"
        else:
            phase = "busy"
        before, self._phase = self._phase, phase
        if phase == "head":
            if before != "head":  # a response ended: wait for the next head (keep-alive times it)
                self._head_started = False
                self._cancel_timers()
                self.guard.wait_for_head(self)
            return
        if before == "head":
            self._cancel_head_timer()
            self.guard.busy(self)
        if phase == "body" and (progress or before != "body"):
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(self.guard.limits.body_timeout_s, self._body_timed_out)
        elif phase == "busy":
            self._cancel_body_timer()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._phase != "head" or self.transport.is_closing():
            return
        self.close_quietly()
        self.guard.release(self)
        self.guard.closed("header_timeout" if self._head_started else "idle")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self._phase != "body" or cycle is None or self.transport.is_closing():
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # The app has not read what came (or not yet asked for the body): not the client's delay.
            self._body_timer = self.loop.call_later(self.guard.limits.body_timeout_s, self._body_timed_out)
            return
        started = cycle.response_started
        # The app waiting on the body sees the client gone; whatever it sends is dropped.
        cycle.disconnected = True
        cycle.keep_alive = False
        cycle.message_event.set()
        if not started:
            seconds = f"{self.guard.limits.body_timeout_s:g}"
            body = (
                b'{"error":{"code":"request_timeout","message":"the request body stopped arriving for '
                + seconds.encode()
                + b' s"}}'
            )
            self.transport.write(_TIMED_OUT % (len(body), body))
        self.transport.close()
        self.guard.release(self)
        self.guard.closed("body_timeout")

    def close_quietly(self) -> None:
        """Close without a response (nothing was asked yet)."""
        self._cancel_timers()
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on a TCP connection.

    A response goes out in pieces (its head, then its body; an event stream one event at a time),
    and with Nagle on, a small piece waits for the client's acknowledgement of the previous one,
    which the client delays (40 ms on Linux): a two-piece answer took that long. asyncio turns it
    off only for sockets whose protocol number says TCP, which a socket made as ``socket(family,
    SOCK_STREAM)`` (``Listener``, uvicorn's own) does not, so it is turned off here, for each
    connection, whatever made the listening socket.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GuardedProtocolFactory:
    """What ``kb serve`` gives uvicorn as ``http=``: called like a protocol class, once per
    connection, it builds a ``GuardedH11Protocol`` sharing this process's ``ConnectionGuard``.

    An instance rather than a class so the limits travel with it to spawned workers; the guard is
    made in each process, on its first connection (after the app's start-up, when the app's
    metrics exist), which also freezes what the start-up loaded out of the garbage collector's
    way (``gc.freeze``).
    """

    def __init__(self, limits: TransportLimits) -> None:
        self.limits = limits
        self._guard: ConnectionGuard | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"limits": self.limits, "_guard": None}

    def __call__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> GuardedH11Protocol:
        guard = self._guard
        if guard is None:
            guard = self._guard = ConnectionGuard(self.limits)
            # The first connection comes after the app's start-up. What it loaded (the model,
            # torch, the libraries: millions of objects) lives as long as the process; out of the
            # collector's sight, a full collection (which a burst of connections sets off) no
            # longer stalls the loop for as long as it takes to walk all of them.
            gc.freeze()
        if not guard.metrics_resolved and config.loaded:
            guard.log.metrics = _app_metrics(config.loaded_app)
            guard.metrics_resolved = True
        return GuardedH11Protocol(config, server_state, app_state, _loop, guard=guard)


def _app_metrics(app: Any) -> Any:
    """The ``Metrics`` of the Litestar app inside uvicorn's middleware, once its start-up built
    the services; None when metrics are off."""
    from litestar import Litestar

    for _ in range(8):  # uvicorn wraps the app in a few middleware, each holding ``.app``
        if isinstance(app, Litestar):
            services = getattr(app.state, "services", None)
            return getattr(services, "metrics", None)
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None
