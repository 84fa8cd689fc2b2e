"""Anthropic Claude provider: streams the Messages API with our own timeouts and retries.

Why our own retries (the SDK's are switched off): a retry is only safe before the first text
delta has been handed to the consumer, because text already sent to a client cannot be taken
back. The SDK cannot know that, so it would retry (or not) at the wrong moments.

Time budget, all measured on the event loop clock:

* connect  - opening the TCP connection (httpx timeout inside the SDK);
* first token - from the start of each attempt to its first text delta (``asyncio`` deadline);
* total   - the whole answer, retries and backoff included, from the call to ``stream``.

Deadlines wrap each await on the upstream only, never a ``yield``: a timeout scope that spans
a ``yield`` would cancel whatever the consumer is doing at that moment instead of our read.

Errors are ``ProviderError`` with a ``code``: rate_limited (429), overloaded (529), upstream_error
(other 5xx, broken or truncated stream), upstream_unreachable (no connection), timeout (any of
the three budgets) - all retryable, and retried here while no text was yielded; bad_request
(400), provider_auth (401/403), model_not_found (404) - not retryable. An ``event: error`` in the
stream maps by its error type. Any failure other than a timeout after text was yielded becomes
stream_interrupted (retryable for the client, never retried here). Those deadline and retry
rules are shared with the other streaming providers (``app.generation.attempts``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import ClassVar

import anthropic
import httpx2  # the SDK's HTTP transport: errors raised while reading a stream come from it
from anthropic.types import AssistantMessageParam, MessageParam, RawMessageStreamEvent, UserMessageParam

from app.generation.attempts import Attempts, Failure, classify_status, fail
from app.generation.base import ModelProvider, TextDelta, Usage
from app.prompting import Prompt
from app.settings import GenerationSettings

__all__ = ["AnthropicProvider"]

# Error ``type`` of the API's JSON error body -> (our code, retryable). Used for ``event: error``
# inside a 200 stream, where there is no HTTP status to go by.
_BY_ERROR_TYPE: dict[str, tuple[str, bool]] = {
    "rate_limit_error": ("rate_limited", True),
    "overloaded_error": ("overloaded", True),
    "api_error": ("upstream_error", True),
    "timeout_error": ("upstream_error", True),
    "invalid_request_error": ("bad_request", False),
    "request_too_large": ("bad_request", False),
    "authentication_error": ("provider_auth", False),
    "permission_error": ("provider_auth", False),
    "billing_error": ("provider_auth", False),
    "not_found_error": ("model_not_found", False),
}


def _classify_status(status: int, error_type: str | None) -> tuple[str, bool]:
    """HTTP status (or, for a mid-stream error event, the error type) -> (code, retryable)."""
    if status < 400:  # an ``event: error`` in a stream that started with 200
        return _BY_ERROR_TYPE.get(error_type or "", ("upstream_error", True))
    return classify_status(status)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a ``retry-after`` header, if the failure was an HTTP reply carrying one."""
    if not isinstance(exc, anthropic.APIStatusError):
        return None
    try:
        seconds = float(exc.response.headers.get("retry-after"))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # absent, or the HTTP-date form (the API sends seconds)
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class AnthropicProvider(ModelProvider):
    """Streams answers from Claude. One instance (and one HTTP connection pool) per app."""

    name: ClassVar[str] = "anthropic"

    def __init__(self, settings: GenerationSettings, api_key: str) -> None:
        self.model = settings.model
        self._settings = settings
        self._api_key = api_key
        # ``anthropic.Timeout`` is the SDK's own transport type (httpx2); it rejects httpx's.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=settings.base_url,
            max_retries=0,
            timeout=anthropic.Timeout(settings.total_timeout_s, connect=settings.connect_timeout_s),
        )

    def __repr__(self) -> str:
        return f"AnthropicProvider(model={self.model!r})"

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta | Usage]:
        """Yield the answer's text deltas, then one ``Usage``. Raises ``ProviderError``."""
        attempts = Attempts(self._settings, label="Anthropic", provider=self.name, secret=self._api_key)
        while True:
            emitted = False  # once True, no retry: the consumer already has part of an answer
            attempts.start()
            try:
                upstream = await attempts.within(self._open(prompt), emitted=False)
                # ``async with`` closes the HTTP response on every exit: end of stream, error,
                # and the consumer closing this generator or cancelling its task.
                async with upstream:
                    input_tokens = output_tokens = 0
                    stopped = False
                    while True:
                        event = await attempts.within(anext(upstream, None), emitted=emitted)
                        if event is None:
                            break
                        if event.type == "message_start":
                            input_tokens = event.message.usage.input_tokens
                        elif (
                            event.type == "content_block_delta"
                            and event.delta.type == "text_delta"
                            and event.delta.text
                        ):
                            emitted = True  # set before the yield: the consumer may keep it
                            yield TextDelta(event.delta.text)
                        elif event.type == "message_delta":
                            output_tokens = event.usage.output_tokens
                            if event.usage.input_tokens is not None:
                                input_tokens = event.usage.input_tokens
                        elif event.type == "message_stop":
                            stopped = True
                    if not stopped:  # a clean end without message_stop: a truncating proxy
                        raise fail("Anthropic stream ended before message_stop", "upstream_error")
                yield Usage(input_tokens=input_tokens, output_tokens=output_tokens)
                return
            except (Failure, anthropic.AnthropicError, httpx2.HTTPError, ValueError) as exc:
                # ValueError: malformed event data (bad JSON, unexpected shape) from upstream.
                failure = exc if isinstance(exc, Failure) else self._classify(exc)
                cause = None if isinstance(exc, Failure) else exc
                await attempts.after_failure(failure, cause, emitted=emitted)

    async def _open(self, prompt: Prompt) -> anthropic.AsyncStream[RawMessageStreamEvent]:
        """Send the request; returns once the response headers arrived (errors raise here)."""
        s = self._settings
        messages: list[MessageParam] = [
            UserMessageParam(role="user", content=m.content)
            if m.role == "user"
            else AssistantMessageParam(role="assistant", content=m.content)
            for m in prompt.messages
        ]
        return await self._client.messages.create(
            model=s.model,
            max_tokens=prompt.parameters.output_tokens(s.max_tokens),  # the version's, if lower
            system=prompt.system if prompt.system else anthropic.omit,
            messages=messages,
            stream=True,
            # SDK 1.x dropped ``temperature`` from the typed signature; the API still takes it
            # and ``extra_body`` puts it into the request JSON unchanged.
            extra_body={"temperature": prompt.parameters.temperature_or(s.temperature)},
        )

    def _classify(self, exc: Exception) -> Failure:
        """An SDK, transport or parsing error -> our error code and retryability."""
        kind = type(exc.__cause__ or exc).__name__
        if isinstance(exc, anthropic.APIStatusError):
            code, retryable = _classify_status(exc.status_code, exc.type)
            upstream = exc.type or f"HTTP {exc.status_code}"
            return fail(
                f"Anthropic API error ({upstream}): {exc.api_message or exc.status_code}",
                code,
                retryable,
                _retry_after(exc),
            )
        if isinstance(exc, anthropic.APITimeoutError):  # raised while sending the request
            if isinstance(exc.__cause__, httpx2.ConnectTimeout):
                seconds = self._settings.connect_timeout_s
                return fail(f"Anthropic connect timeout ({seconds}s) expired", "timeout")
            return fail(f"Anthropic request timed out ({kind})", "timeout")
        if isinstance(exc, anthropic.APIConnectionError):
            return fail(f"Anthropic API unreachable ({kind})", "upstream_unreachable")
        if isinstance(exc, httpx2.TimeoutException):  # a stream read stalled past httpx's limit
            return fail(f"Anthropic stream timed out ({kind})", "timeout")
        if isinstance(exc, httpx2.HTTPError):  # the connection broke while reading the stream
            return fail(f"Anthropic stream broke ({kind})", "upstream_error")
        if isinstance(exc, ValueError):
            return fail(f"Anthropic sent a malformed stream ({kind})", "upstream_error")
        return fail(f"Anthropic SDK error ({kind})", "provider_error", retryable=False)
