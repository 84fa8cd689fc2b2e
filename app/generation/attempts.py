"""The rules every streaming provider shares: deadlines, when to retry, what the client is told.

A provider makes one or more attempts at an answer within one total deadline:

* each attempt must produce its first text before the first-token deadline (never later than the
  total one); once text has reached the consumer, only the total deadline applies;
* a failed attempt is retried only while nothing has reached the consumer (a half answer cannot
  be taken back), only when its error is retryable, at most ``max_retries`` times, and only when
  the wait (the server's ``retry-after``, else exponential backoff with jitter) still ends before
  the total deadline;
* after text has reached the consumer, any failure but a timeout is ``stream_interrupted``;
* upstream messages are quoted in ours, so the API key is scrubbed from every one of them.

Providers keep what is theirs (talking to their API, classifying its errors into a ``Failure``);
``Attempts`` keeps these rules in one place.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import TypeVar

import structlog

from app.errors import ProviderError
from app.settings import GenerationSettings

__all__ = ["Attempts", "Failure", "classify_status", "fail"]

log = structlog.get_logger("kb.generation")

T = TypeVar("T")

_JITTER = 0.1
"""Up to this share of the backoff is added at random: it spreads out the retries of many
requests that failed together."""


def classify_status(status: int) -> tuple[str, bool]:
    """An upstream HTTP error status -> (our error code, retryable): one table for every
    provider, so a client sees the same codes whichever model answers."""
    if status == 429:
        return "rate_limited", True
    if status == 529:
        return "overloaded", True
    if status >= 500 or status in (408, 409):  # 408/409 are transient, as the SDKs also treat them
        return "upstream_error", True
    if status in (400, 413, 422):
        return "bad_request", False
    if status in (401, 402, 403):
        return "provider_auth", False
    if status == 404:
        return "model_not_found", False
    return "provider_error", False


class Failure(Exception):
    """An attempt failed: the error to raise, plus what the retry decision needs to know."""

    def __init__(self, error: ProviderError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def fail(message: str, code: str, retryable: bool = True, retry_after: float | None = None) -> Failure:
    """A ``Failure`` of an attempt, with our error code and whether it is worth retrying."""
    return Failure(ProviderError(message, code=code, retryable=retryable), retry_after)


class Attempts:
    """The deadlines and retry decisions of one streamed answer; make one per ``stream`` call."""

    def __init__(
        self, settings: GenerationSettings, *, label: str, provider: str, secret: str | None = None
    ) -> None:
        self._settings = settings
        self._label = label
        self._provider = provider
        self._secret = secret
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + settings.total_timeout_s
        self.first_token_at = self.deadline
        self.attempt = 0

    def start(self) -> None:
        """Begin an attempt: its first text is due within the first-token timeout."""
        self.first_token_at = min(self._loop.time() + self._settings.first_token_timeout_s, self.deadline)

    async def within(self, awaitable: Awaitable[T], *, emitted: bool) -> T:
        """Await one upstream step under the deadline that applies, turning expiry into a
        timeout ``Failure``: the first-token deadline until text was emitted, then the total."""
        limit = self.deadline if emitted else self.first_token_at
        scope = asyncio.timeout_at(limit)
        try:
            async with scope:
                return await awaitable
        except TimeoutError:
            if not scope.expired():
                raise
            s = self._settings
            which, seconds = (
                ("total", s.total_timeout_s)
                if limit >= self.deadline
                else ("first-token", s.first_token_timeout_s)
            )
            raise fail(f"{self._label} {which} timeout ({seconds}s) expired", "timeout") from None

    async def after_failure(self, failure: Failure, cause: BaseException | None, *, emitted: bool) -> None:
        """Raise the ``ProviderError`` the consumer gets, or wait before the next attempt."""
        s = self._settings
        error = self.redacted(failure.error)
        if emitted:
            if error.code != "timeout":
                error = ProviderError(
                    f"{self._label} stream interrupted after the answer had started: {error.message}",
                    code="stream_interrupted",
                    retryable=True,
                )
            raise error from cause
        delay = self._delay(failure.retry_after)
        if not error.retryable or self.attempt >= s.max_retries:
            if self.attempt:
                error = ProviderError(
                    f"{error.message} (after {self.attempt + 1} attempts)",
                    code=error.code,
                    retryable=error.retryable,
                )
            raise error from cause
        if self._loop.time() + delay >= self.deadline:
            raise ProviderError(
                f"{error.message} (no retry: waiting {delay:.2f}s would pass the "
                f"total timeout of {s.total_timeout_s}s)",
                code=error.code,
                retryable=error.retryable,
            ) from cause
        log.warning(
            "provider_retry",
            provider=self._provider,
            code=error.code,
            attempt=self.attempt + 1,
            retry_in_s=round(delay, 2),
        )
        await asyncio.sleep(delay)
        self.attempt += 1

    def redacted(self, error: ProviderError) -> ProviderError:
        """``error`` with the API key scrubbed from its message."""
        if self._secret and self._secret in error.message:
            return ProviderError(
                error.message.replace(self._secret, "***"), code=error.code, retryable=error.retryable
            )
        return error

    def _delay(self, retry_after: float | None) -> float:
        """The server's ``retry-after`` wins; else exponential backoff with jitter."""
        if retry_after is not None:
            return retry_after
        base: float = self._settings.retry_backoff_s * 2**self.attempt
        return base + random.uniform(0.0, _JITTER * base)
