"""A fake OpenAI-compatible Chat Completions server on a loopback port, scriptable per test.

It speaks the wire format vLLM, Ollama and llama.cpp server copy from OpenAI: ``POST
/v1/chat/completions``; JSON error bodies ``{"error": {...}}``; a stream of server-sent events
``data: {chat.completion.chunk}`` in HTTP chunks, ``choices[0].delta.content`` carrying the text,
a chunk with a ``finish_reason``, a usage chunk when the request asked for one with
``stream_options.include_usage`` (and the scripted server reports usage), then ``data: [DONE]``.
Any HTTP client runs unchanged against it; it serves from its own event loop in a daemon thread
(usable from sync and async tests and by an app in the same process)::

    with FakeOpenAI() as server:               # or the ``fake_openai`` fixture below
        server.script(Reply.error(429, retry_after=0), Reply.text(["Hel", "lo"]))
        ...  # client at server.base_url: 1st request gets the 429, 2nd streams "Hello"
        assert len(server.requests) == 2 and server.requests[0].api_key == "test-key"

Scripted replies are used one per request, in order, then ``server.default``. Every request is
recorded, with when the client hung up if it did so before the reply was complete (responses
say ``connection: close``, so any end of the client's side during a reply is a hang-up).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import pytest

__all__ = ["FakeOpenAI", "RecordedRequest", "Reply", "fake_openai"]

_DEFAULT_DELTAS = ("Hello", ", ", "world", "!")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted response. Build it with the factory class methods."""

    kind: Literal["text", "error", "stall", "cut", "truncated", "sse_error", "unstreamed"]
    deltas: tuple[str, ...] = _DEFAULT_DELTAS
    prompt_tokens: int = 10
    completion_tokens: int | None = None  # None: the number of deltas sent
    reports_usage: bool = True  # False: a server that never sends a usage chunk, even if asked
    sends_done: bool = True  # False: the stream ends after the finish reason, without [DONE]
    delay: float = 0.0  # pause before each text delta, seconds
    finish_reason: str = "stop"
    status: int = 200
    error_type: str = "server_error"
    error_code: int | str | None = None
    message: str = ""
    body: bytes | None = None  # an error reply's body as is, instead of the JSON error object
    retry_after: float | None = None
    after_deltas: int = 0
    stall_s: float = 60.0
    before_headers: bool = False

    @classmethod
    def text(
        cls,
        deltas: Sequence[str],
        *,
        prompt_tokens: int = 10,
        completion_tokens: int | None = None,
        reports_usage: bool = True,
        sends_done: bool = True,
        delay: float = 0.0,
        finish_reason: str = "stop",
    ) -> Reply:
        """A complete answer: these text deltas, the finish reason, the usage, ``[DONE]``."""
        return cls(
            kind="text",
            deltas=tuple(deltas),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            reports_usage=reports_usage,
            sends_done=sends_done,
            delay=delay,
            finish_reason=finish_reason,
        )

    @classmethod
    def error(
        cls,
        status: int,
        *,
        error_type: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        body: bytes | None = None,
    ) -> Reply:
        """An HTTP error with OpenAI's JSON error body (or ``body`` as given), plus
        ``retry-after`` if given."""
        kind = error_type or _ERROR_TYPES.get(status, "server_error")
        return cls(
            kind="error",
            status=status,
            error_type=kind,
            message=message or f"fake {kind}",
            retry_after=retry_after,
            body=body,
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
    def truncated(cls, *, after_deltas: int = 1, deltas: Sequence[str] = _DEFAULT_DELTAS) -> Reply:
        """End the body cleanly after ``after_deltas`` text deltas, with neither a finish
        reason nor ``[DONE]`` (what a proxy that gives up on a long stream sends)."""
        return cls(kind="truncated", after_deltas=after_deltas, deltas=tuple(deltas))

    @classmethod
    def sse_error(
        cls,
        error_type: str = "server_error",
        *,
        code: int | str | None = None,
        after_deltas: int = 0,
        message: str | None = None,
        deltas: Sequence[str] = _DEFAULT_DELTAS,
    ) -> Reply:
        """A 200 stream: ``after_deltas`` text deltas, then ``data: {"error": ...}`` and
        ``[DONE]``, as vLLM sends when generation fails mid-stream."""
        return cls(
            kind="sse_error",
            error_type=error_type,
            error_code=code,
            after_deltas=after_deltas,
            message=message or f"fake {error_type}",
            deltas=tuple(deltas),
        )

    @classmethod
    def unstreamed(cls, deltas: Sequence[str] = _DEFAULT_DELTAS) -> Reply:
        """A 200 ``application/json`` completion, as from a server that ignores ``stream``."""
        return cls(kind="unstreamed", deltas=tuple(deltas))

    def sent_deltas(self) -> tuple[str, ...]:
        """The text deltas this reply streams before it ends (or stalls, or breaks)."""
        if self.kind in ("text", "unstreamed"):
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
        """The token of ``authorization: Bearer``, the only credential OpenAI's API takes."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    @property
    def streamed(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def wants_usage(self) -> bool:
        options = self.body.get("stream_options") if isinstance(self.body, dict) else None
        return isinstance(options, dict) and options.get("include_usage") is True

    async def wait_client_closed(self, timeout: float = 1.0) -> float:
        """Wait, without blocking the event loop, until the client hung up; return when it did.
        Raises ``TimeoutError`` if it has not within ``timeout`` seconds."""
        give_up = time.monotonic() + timeout
        while self.client_closed_at is None:
            if time.monotonic() > give_up:
                raise TimeoutError(f"client did not close the connection within {timeout}s")
            await asyncio.sleep(0.005)
        return self.client_closed_at


class FakeOpenAI:
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
        """The base URL clients are configured with: API prefix included, as for vLLM."""
        return f"http://127.0.0.1:{self.port}/v1"

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

    def start(self) -> FakeOpenAI:
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            serving = asyncio.start_server(self._serve, "127.0.0.1", 0)
            self._server = loop.run_until_complete(serving)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAI:
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
            if method != "POST" or path.split("?", 1)[0] != _CHAT_PATH:
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
        self.id = f"chatcmpl-fake{time.monotonic_ns()}"
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
                extra = {} if after is None else {"retry-after": f"{after:g}"}
                if reply.body is None:
                    _write_json(
                        self.writer, reply.status, _error_body(reply.error_type, reply.message), extra
                    )
                else:
                    _write(self.writer, reply.status, "text/html", reply.body, extra)
                self._complete()
            elif reply.kind == "unstreamed":
                _write_json(self.writer, 200, self._completion(reply.sent_deltas()))
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
        self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for text in deltas:
            if not await self._pause(reply.delay):
                return
            self._chunk([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
            await writer.drain()
        if reply.kind in ("stall", "cut"):
            if reply.kind == "cut" or await self._pause(reply.stall_s):
                await self._drop()
            return
        if reply.kind == "sse_error":
            error = {
                "message": reply.message,
                "type": reply.error_type,
                "param": None,
                "code": reply.error_code,
            }
            self._data(json.dumps({"error": error}))
            self._data("[DONE]")
        elif reply.kind == "text":
            self._chunk([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
            if reply.reports_usage and self.record.wants_usage:
                completion = len(deltas) if reply.completion_tokens is None else reply.completion_tokens
                usage = {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": reply.prompt_tokens + completion,
                }
                self._chunk([], usage=usage)
            if reply.sends_done:
                self._data("[DONE]")
        if not self.hangup.done():
            writer.write(b"0\r\n\r\n")  # the last chunk: the body is complete
            self._complete()
            await writer.drain()

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
        """One ``chat.completion.chunk``; with ``include_usage`` every chunk has a ``usage`` key,
        null but on the last one, as OpenAI sends it."""
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.record.body.get("model", "fake-model"),
            "system_fingerprint": None,
            "choices": [{**choice, "logprobs": None} for choice in choices],
        }
        if self.record.wants_usage:
            chunk["usage"] = usage
        self._data(json.dumps(chunk, separators=(",", ":")))

    def _data(self, data: str) -> None:
        """One SSE event as one HTTP chunk; nothing is written once the client has hung up."""
        if not self.hangup.done():
            payload = f"data: {data}\n\n".encode()
            self.writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def _completion(self, deltas: tuple[str, ...]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.record.body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(deltas)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": len(deltas),
                "total_tokens": 10 + len(deltas),
            },
        }


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
    reason = "Site is overloaded" if status == 529 else HTTPStatus(status).phrase
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "connection: close",
        f"x-request-id: req_fake_{time.monotonic_ns()}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _write(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    data: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    fields = {"content-type": content_type, "content-length": str(len(data)), **(headers or {})}
    writer.write(_head(status, fields) + data)


def _write_json(
    writer: asyncio.StreamWriter, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    _write(writer, status, "application/json", json.dumps(payload).encode(), headers)


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started ``FakeOpenAI``, fresh for each test. To use it, import it into the test module
    or a ``conftest.py``: ``from tests.fakes.openai_server import fake_openai``."""
    with FakeOpenAI() as server:
        yield server
