"""OpenAI-compatible provider: streams Chat Completions from a self-hosted server (vLLM, Ollama,
llama.cpp server, LM Studio) with our own timeouts and retries.

Plain ``httpx`` rather than the ``openai`` SDK: the SDK refuses to send a request without a key
(most self-hosted servers have none) and reads further ``OPENAI_*`` variables (organisation,
project, admin key) into headers for whatever server the base URL names. Here the request is
exactly what is written below, and the only credential is ``OPENAI_API_KEY``, sent as a bearer
token when it is set.

The design is the Anthropic provider's (``app.generation.anthropic``), and so are the error
codes a client sees:

* retries only before the first text delta reached the consumer - text already sent cannot be
  taken back;
* three budgets: connect (httpx), first token (from the start of each attempt to its first text
  delta) and total (the whole answer, retries and backoff included), the latter two as
  ``asyncio`` deadlines around each await on the upstream, never around a ``yield``;
* rate_limited (429), overloaded (529), upstream_error (other 5xx, a broken, truncated or
  malformed stream), upstream_unreachable (no connection), timeout - retryable; bad_request
  (400/413/422), provider_auth (401-403), model_not_found (404: an unknown model, or a base URL
  without its ``/v1``) - not; a mid-stream ``{"error": ...}`` chunk maps by its code or type;
  anything but a timeout after text was yielded becomes stream_interrupted.

Usage is asked for with ``stream_options.include_usage`` and reported when the server sends
it; a server that does not report usage still answers, just without a ``Usage`` item.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import msgspec

from app.generation.attempts import Attempts, Failure, classify_status, fail
from app.generation.base import ModelProvider, TextDelta, Usage
from app.prompting import Prompt
from app.settings import GenerationSettings

__all__ = ["OpenAIProvider"]

_LABEL = "OpenAI-compatible server"
"""How our messages name the upstream (it may be vLLM, Ollama, ... - we cannot tell which)."""

_QUOTED_CHARS = 300
"""Longest piece of an upstream error message quoted in ours (a proxy may send a whole page)."""

# Error ``type`` or string ``code`` of an error body -> (our code, retryable). Servers differ:
# OpenAI and llama.cpp use snake_case types, vLLM exception names, OpenAI rate limits a code.
_BY_ERROR_KIND: dict[str, tuple[str, bool]] = {
    "invalid_request_error": ("bad_request", False),
    "BadRequestError": ("bad_request", False),
    "context_length_exceeded": ("bad_request", False),
    "authentication_error": ("provider_auth", False),
    "AuthenticationError": ("provider_auth", False),
    "permission_error": ("provider_auth", False),
    "PermissionDeniedError": ("provider_auth", False),
    "not_found_error": ("model_not_found", False),
    "NotFoundError": ("model_not_found", False),
    "model_not_found": ("model_not_found", False),
    "rate_limit_error": ("rate_limited", True),
    "rate_limit_exceeded": ("rate_limited", True),
    "RateLimitError": ("rate_limited", True),
    "server_error": ("upstream_error", True),
    "api_error": ("upstream_error", True),
    "InternalServerError": ("upstream_error", True),
}


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: int | str | None = None


class _ErrorBody(msgspec.Struct):
    """An error reply: ``{"error": {...}}`` (OpenAI, newer vLLM, Ollama, llama.cpp), the same
    fields at the top (older vLLM), ``{"error": "text"}`` or FastAPI's ``{"detail": "text"}``."""

    error: _ErrorDetail | str | None = None
    message: str | None = None
    type: str | None = None
    code: int | str | None = None
    detail: str | None = None


class _Delta(msgspec.Struct):
    content: str | None = None  # reasoning servers send their thinking in other fields: not text


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _TokenUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Chunk(msgspec.Struct):
    """One ``chat.completion.chunk`` (or a mid-stream error); unknown fields are ignored."""

    choices: list[_Choice] | None = None
    usage: _TokenUsage | None = None
    error: _ErrorDetail | str | None = None


def _classify_detail(detail: _ErrorDetail | str) -> tuple[str, bool]:
    """A mid-stream error chunk: a numeric code is an HTTP status; else the type or code names it.
    Unknown errors count as transient, as a broken stream does."""
    if isinstance(detail, str):
        return "upstream_error", True
    if isinstance(detail.code, int) and detail.code >= 400:
        return classify_status(detail.code)
    for kind in (detail.code, detail.type):
        if isinstance(kind, str) and kind in _BY_ERROR_KIND:
            return _BY_ERROR_KIND[kind]
    return "upstream_error", True


def _describe(detail: _ErrorDetail | str | None, fallback: str) -> str:
    if isinstance(detail, str):
        return detail
    if detail is None:
        return fallback
    label = detail.type or (str(detail.code) if detail.code is not None else None)
    text = detail.message or fallback
    return f"{label}: {text}" if label else text


def _error_message(raw: bytes) -> str:
    """The server's own words from an error reply, whatever its shape (JSON or not)."""
    try:
        body = msgspec.json.decode(raw, type=_ErrorBody)
    except msgspec.DecodeError:
        text = raw.decode("utf-8", "replace").strip()
    else:
        if body.error is not None:
            text = _describe(body.error, "")
        else:
            text = _describe(_ErrorDetail(body.message or body.detail, body.type, body.code), "")
    text = " ".join(text.split())
    if len(text) > _QUOTED_CHARS:
        text = text[:_QUOTED_CHARS] + "…"
    return text or "no error message"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``retry-after`` header (the HTTP-date form is not used by these servers)."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class _SSEDecoder:
    """Server-sent events, line by line: returns an event's ``data`` once its blank line arrives.
    ``event:``, ``id:``, ``retry:`` and comment lines are ignored (Chat Completions uses none)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line:
            if line == "data" or line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
            return None
        return self.flush()

    def flush(self) -> str | None:
        """The pending event, if any (also at the end of the body: some servers omit the last
        blank line)."""
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data.clear()
        return data


class OpenAIProvider(ModelProvider):
    """Streams answers from an OpenAI-compatible server. One instance (one connection pool) per app."""

    name: ClassVar[str] = "openai"

    def __init__(self, settings: GenerationSettings, api_key: str | None = None) -> None:
        # Settings built without load_settings (tests) get the same check as at load.
        base_url, self.model = settings.openai_endpoint()
        self._settings = settings
        self._api_key = api_key
        headers = {"accept": "text/event-stream"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(settings.total_timeout_s, connect=settings.connect_timeout_s),
        )

    def __repr__(self) -> str:
        url = self._client.base_url  # host and port only: a URL may carry user:password
        return f"OpenAIProvider(model={self.model!r}, host={url.host!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta | Usage]:
        """Yield the answer's text deltas, then one ``Usage`` if the server reported it.
        Raises ``ProviderError``."""
        attempts = Attempts(self._settings, label=_LABEL, provider=self.name, secret=self._api_key)
        while True:
            emitted = False  # once True, no retry: the consumer already has part of an answer
            attempts.start()
            try:
                response = await attempts.within(self._open(prompt), emitted=False)
                # Closed on every exit: end of stream, error, and the consumer closing this
                # generator or cancelling its task (the connection is dropped mid-body at once).
                try:
                    usage: Usage | None = None
                    complete = False
                    decoder = _SSEDecoder()
                    lines = response.aiter_lines()
                    while True:
                        line = await attempts.within(anext(lines, None), emitted=emitted)
                        data = decoder.flush() if line is None else decoder.feed(line)
                        if data == "[DONE]":
                            complete = True
                            break
                        if data is not None:
                            chunk = msgspec.json.decode(data, type=_Chunk)
                            if chunk.error is not None:
                                code, retryable = _classify_detail(chunk.error)
                                message = _describe(chunk.error, "no error message")
                                raise fail(f"{_LABEL} sent an error: {message}", code, retryable)
                            for choice in chunk.choices or ():
                                if choice.delta is not None and choice.delta.content:
                                    emitted = True  # set before the yield: the consumer may keep it
                                    yield TextDelta(choice.delta.content)
                                complete = complete or choice.finish_reason is not None
                            if chunk.usage is not None:
                                usage = Usage(
                                    input_tokens=chunk.usage.prompt_tokens or 0,
                                    output_tokens=chunk.usage.completion_tokens or 0,
                                )
                        if line is None:
                            break
                    # A clean end with neither [DONE] nor a finish reason: a truncating proxy.
                    # (A finish reason without [DONE] is complete: some servers omit it.)
                    if not complete:
                        raise fail(f"{_LABEL} stream ended before [DONE]", "upstream_error")
                finally:
                    await response.aclose()
                if usage is not None:
                    yield usage
                return
            except (Failure, httpx.HTTPError, ValueError) as exc:
                # ValueError: malformed event data (bad JSON, unexpected shape) from upstream.
                failure = exc if isinstance(exc, Failure) else self._classify(exc)
                cause = None if isinstance(exc, Failure) else exc
                await attempts.after_failure(failure, cause, emitted=emitted)

    def _body(self, prompt: Prompt) -> dict[str, Any]:
        s = self._settings
        messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]
        return {
            "model": self.model,
            "messages": messages,
            # ``max_tokens``, not OpenAI's newer ``max_completion_tokens``: every server takes it.
            "max_tokens": prompt.parameters.output_tokens(s.max_tokens),  # the version's, if lower
            "temperature": prompt.parameters.temperature_or(s.temperature),
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def _open(self, prompt: Prompt) -> httpx.Response:
        """Send the request; returns a 200 event stream once its headers arrived. A failure to
        connect, an error status or any other reply raises ``Failure`` here."""
        request = self._client.build_request("POST", "chat/completions", json=self._body(prompt))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.ConnectTimeout:
            seconds = self._settings.connect_timeout_s
            raise fail(f"{_LABEL} connect timeout ({seconds}s) expired", "timeout") from None
        except httpx.TimeoutException as exc:
            raise fail(f"{_LABEL} request timed out ({type(exc).__name__})", "timeout") from None
        except httpx.TransportError as exc:
            # Refused, reset, or closed before any reply: nothing answered.
            raise fail(
                f"{_LABEL} unreachable at {request.url.host}:{request.url.port} ({type(exc).__name__})",
                "upstream_unreachable",
            ) from None
        try:
            if response.status_code != 200:
                try:
                    raw = await response.aread()
                except httpx.HTTPError:
                    raw = b""
                code, retryable = classify_status(response.status_code)
                raise fail(
                    f"{_LABEL} error (HTTP {response.status_code} at {request.url.path}): "
                    f"{_error_message(raw)}",
                    code,
                    retryable,
                    _retry_after(response),
                )
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise fail(
                    f"{_LABEL} replied with {content_type or 'no content type'} instead of an "
                    f"event stream (is {request.url.path} a Chat Completions endpoint?)",
                    "provider_error",
                    retryable=False,
                )
        except BaseException:
            await response.aclose()
            raise
        return response

    def _classify(self, exc: Exception) -> Failure:
        """A transport or parsing error while reading the stream -> our code and retryability."""
        kind = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):  # a read stalled past httpx's own limit
            return fail(f"{_LABEL} stream timed out ({kind})", "timeout")
        if isinstance(exc, httpx.HTTPError):  # the connection broke while reading the stream
            return fail(f"{_LABEL} stream broke ({kind})", "upstream_error")
        return fail(f"{_LABEL} sent a malformed stream ({kind})", "upstream_error")
