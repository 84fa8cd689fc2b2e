"""A fake Anthropic Messages API on a loopback port, scriptable per test.

It speaks the real wire format (``POST /v1/messages``; JSON error bodies; server-sent events
``message_start`` ... ``message_stop`` in HTTP chunks), so the real ``anthropic`` SDK runs
unchanged against it, from its own event loop in a daemon thread (usable from sync and async
tests and by an app in the same process)::

    with FakeAnthropic() as server:            # or the ``fake_anthropic`` fixture below
        server.script(Reply.error(429, retry_after=0), Reply.text(["Hel", "lo"]))
        ...  # app at server.base_url: 1st request gets the 429, 2nd streams "Hello"
        assert len(server.requests) == 2 and server.requests[0].api_key == "test-key"

Scripted replies are used one per request, in order, then ``server.default``. Every request is
recorded, with when the client hung up if it did so before the reply was complete (responses
say ``connection: close``, so any end of the client's side during a reply is a hang-up).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import pytest

__all__ = ["FakeAnthropic", "RecordedRequest", "Reply", "closed_port_url", "fake_anthropic"]

_DEFAULT_DELTAS = ("Hello", ", ", "world", "!")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted response. Build it with the factory class methods."""

    kind: Literal["text", "error", "stall", "cut", "sse_error"]
    deltas: tuple[str, ...] = _DEFAULT_DELTAS
    input_tokens: int = 10
    output_tokens: int | None = None  # None: the number of deltas sent
    delay: float = 0.0  # pause before each text delta, seconds
    stop_reason: str = "end_turn"
    status: int = 200
    error_type: str = "api_error"
    message: str = ""
    retry_after: float | None = None
    after_deltas: int = 0
    stall_s: float = 60.0
    before_headers: bool = False

    @classmethod
    def text(
        cls,
        deltas: Sequence[str],
        *,
        input_tokens: int = 10,
        output_tokens: int | None = None,
        delay: float = 0.0,
        stop_reason: str = "end_turn",
    ) -> Reply:
        """A complete answer: these text deltas, then the usage and ``message_stop``."""
        return cls(
            kind="text",
            deltas=tuple(deltas),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            delay=delay,
            stop_reason=stop_reason,
        )

    @classmethod
    def error(
        cls,
        status: int,
        *,
        error_type: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> Reply:
        """An HTTP error with the API's JSON error body, plus ``retry-after`` if given."""
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        kind = error_type or _ERROR_TYPES.get(status, fallback)
        return cls(
            kind="error",
            status=status,
            error_type=kind,
            message=message or f"fake {kind}",
            retry_after=retry_after,
        )

    @classmethod
    def stall(
        cls,
        *,
        after_deltas: int = 0,
        before_headers: bool = False,
        seconds: float = 60.0,
        deltas: Sequence[str] = _DEFAULT_DELTAS,
    ) -> Reply:
        """Go silent after ``after_deltas`` text deltas, keeping the connection open (with
        ``before_headers``: send no response at all). After ``seconds`` the connection is
        dropped. A client hanging up first is recorded in ``client_closed_at``."""
        return cls(
            kind="stall",
            after_deltas=after_deltas,
            before_headers=before_headers,
            stall_s=seconds,
            deltas=tuple(deltas),
        )

    @classmethod
    def cut(cls, *, after_deltas: int = 1, deltas: Sequence[str] = _DEFAULT_DELTAS) -> Reply:
        """Drop the connection abruptly, mid chunked body, after ``after_deltas`` text deltas."""
        return cls(kind="cut", after_deltas=after_deltas, deltas=tuple(deltas))

    @classmethod
    def sse_error(
        cls,
        error_type: str = "overloaded_error",
        *,
        after_deltas: int = 0,
        message: str | None = None,
        deltas: Sequence[str] = _DEFAULT_DELTAS,
    ) -> Reply:
        """A 200 stream: ``after_deltas`` text deltas, then ``event: error``, then the end."""
        return cls(
            kind="sse_error",
            error_type=error_type,
            after_deltas=after_deltas,
            message=message or f"fake {error_type}",
            deltas=tuple(deltas),
        )

    def sent_deltas(self) -> tuple[str, ...]:
        """The text deltas this reply streams before it ends (or stalls, or breaks)."""
        if self.kind == "text":
            return self.deltas
        more = (f" tok{i}" for i in itertools.count(len(self.deltas)))
        return tuple(itertools.islice(itertools.chain(self.deltas, more), self.after_deltas))


@dataclass
class RecordedRequest:
    """A request as the fake received it. Times are ``time.monotonic()`` values."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON
    reply: Reply
    received_at: float
    finished_at: float | None = None  # the complete response had been written
    client_closed_at: float | None = None  # the client hung up before the response was complete

    @property
    def api_key(self) -> str | None:
        """The credential: ``x-api-key``, or the token of ``authorization: Bearer`` (which the
        anthropic SDK 2.x sends for ``api_key=``)."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return self.headers.get("x-api-key") or (token if scheme.lower() == "bearer" else None)

    @property
    def streamed(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    async def wait_client_closed(self, timeout: float = 1.0) -> float:
        """Wait, without blocking the event loop, until the client hung up; return when it did.
        Raises ``TimeoutError`` if it has not within ``timeout`` seconds."""
        give_up = time.monotonic() + timeout
        while self.client_closed_at is None:
            if time.monotonic() > give_up:
                raise TimeoutError(f"client did not close the connection within {timeout}s")
            await asyncio.sleep(0.005)
        return self.client_closed_at


class FakeAnthropic:
    """The fake server: ``start()``/``stop()``, or a context manager. Control methods are
    thread-safe; the server itself runs on its own loop in a daemon thread."""

    def __init__(self, *, default: Reply | None = None) -> None:
        self.default: Reply = default or Reply.text(["This is ", "a fake ", "answer."])
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        """For the SDK's ``base_url`` (it appends ``/v1/messages`` itself)."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, one per request, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget the script and the recorded requests (``default`` stays)."""
        with self._lock:
            self._script.clear()
            self._requests.clear()

    def start(self) -> FakeAnthropic:
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            serving = asyncio.start_server(self._serve, "127.0.0.1", 0)
            self._server = loop.run_until_complete(serving)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-anthropic", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the fake Anthropic server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            parsed = await _read_request(reader)
            if parsed is None:
                return
            method, path, headers, raw = parsed
            if method != "POST" or path.split("?", 1)[0] != "/v1/messages":
                _write_json(writer, 404, _error_body("not_found_error", f"no {method} {path}"))
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with self._lock:
                    reply = self._script.popleft() if self._script else self.default
                    record = RecordedRequest(method, path, headers, body, reply, time.monotonic())
                    self._requests.append(record)
                await _Exchange(record, reader, writer).play()
            if not writer.transport.is_closing():
                writer.close()  # flushes what is buffered, then closes
                await writer.wait_closed()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; the exchange recorded it where that matters
        finally:
            writer.transport.abort()  # a no-op after a clean close; otherwise drop at once
            self._tasks.discard(task)


class _Exchange:
    """Plays one reply to one recorded request."""

    def __init__(
        self, record: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.record, self.reply, self.writer = record, record.reply, writer
        # The client sends nothing after its request, so a read that completes means a hang-up.
        self.hangup: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(1))
        self.hangup.add_done_callback(self._on_read)

    def _on_read(self, read: asyncio.Future[bytes] | None = None) -> None:
        """Record a hang-up: an EOF or error on the read, or (``read`` None) a failed write."""
        if read is not None and (read.cancelled() or (not read.exception() and read.result())):
            return
        if self.record.finished_at is None and self.record.client_closed_at is None:
            self.record.client_closed_at = time.monotonic()

    def _complete(self) -> None:
        """Call right after writing the response's last byte, before any await: the client may
        hang up as soon as it has read it, which must not count as hanging up early."""
        self.hangup.cancel()
        self.record.finished_at = time.monotonic()

    async def _pause(self, seconds: float) -> bool:
        """Sleep, waking at once if the client hangs up. True while it is still connected."""
        await (asyncio.wait({self.hangup}, timeout=seconds) if seconds > 0 else asyncio.sleep(0))
        return not self.hangup.done()

    async def _drop(self) -> None:
        """Abort the connection once what was written reached the socket (not a hang-up)."""
        self.hangup.cancel()
        transport = self.writer.transport
        while transport.get_write_buffer_size() and not transport.is_closing():
            await asyncio.sleep(0.001)
        transport.abort()

    async def play(self) -> None:
        reply, streamed = self.reply, self.record.streamed
        try:
            if reply.kind == "error":
                after = reply.retry_after
                retry = {} if after is None else {"retry-after": f"{after:g}"}
                _write_json(self.writer, reply.status, _error_body(reply.error_type, reply.message), retry)
                self._complete()
            elif not streamed:  # the service only streams, so the fake only scripts streams
                _write_json(
                    self.writer,
                    400,
                    _error_body("invalid_request_error", "this fake serves stream=true only"),
                )
                self._complete()
            elif reply.kind == "stall" and reply.before_headers:
                if await self._pause(reply.stall_s):
                    await self._drop()
            else:
                await self._stream(reply.sent_deltas())
        except ConnectionError:
            self._on_read()  # a write found the client gone before the read did
            raise
        finally:
            self.hangup.cancel()

    async def _stream(self, deltas: tuple[str, ...]) -> None:
        reply, writer = self.reply, self.writer
        writer.write(
            _head(
                200,
                {
                    "content-type": "text/event-stream; charset=utf-8",
                    "cache-control": "no-cache",
                    "transfer-encoding": "chunked",
                },
            )
        )
        model = self.record.body.get("model", "claude-fake")
        self._event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake_{time.monotonic_ns()}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
                },
            },
        )
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        self._event("ping", {"type": "ping"})
        for text in deltas:
            if not await self._pause(reply.delay):
                return
            self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            )
            await writer.drain()
        if reply.kind in ("stall", "cut"):
            if reply.kind == "cut" or await self._pause(reply.stall_s):
                await self._drop()
            return
        if reply.kind == "sse_error":
            self._event("error", _error_body(reply.error_type, reply.message))
        else:
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                    "usage": {
                        "output_tokens": len(deltas) if reply.output_tokens is None else reply.output_tokens
                    },
                },
            )
            self._event("message_stop", {"type": "message_stop"})
        if not self.hangup.done():
            writer.write(b"0\r\n\r\n")  # the last chunk: the body is complete
            self._complete()
            await writer.drain()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        """One SSE event as one HTTP chunk; nothing is written once the client has hung up."""
        if not self.hangup.done():
            payload = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            self.writer.write(b"%x\r\n%s\r\n" % (len(payload.encode()), payload.encode()))


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    pairs = (line.partition(":") for line in lines if ":" in line)
    headers = {name.strip().lower(): value.strip() for name, _, value in pairs}
    return method, path, headers, await reader.readexactly(int(headers.get("content-length", "0")))


def _head(status: int, headers: dict[str, str]) -> bytes:
    reason = "Overloaded" if status == 529 else HTTPStatus(status).phrase  # 529 is Anthropic's
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "connection: close",
        f"request-id: req_fake_{time.monotonic_ns()}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _write_json(
    writer: asyncio.StreamWriter, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(payload).encode()
    writer.write(
        _head(
            status, {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}
        )
        + data
    )


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def closed_port_url() -> str:
    """A loopback URL on which nothing listens, so connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started ``FakeAnthropic``, fresh for each test. To use it, import it into the test
    module or a ``conftest.py``: ``from tests.fakes.anthropic_server import fake_anthropic``."""
    with FakeAnthropic() as server:
        yield server
