"""Work that runs after the response: a bounded in-process queue, drained at shut-down.

Storing a request's record (and whatever else needs no answer before the client's last event)
is handed to ``BackgroundWork.submit``, which only enqueues: the request never waits for it.
One worker task runs the jobs in order, each bounded by a timeout; a job's failure is logged
with the request's id, never raised, and never reaches the client. A full queue drops the new
job with a warning rather than grow without bound while the state store is slow.

The worker starts on the first job (it needs the running loop, which the composition root,
built off the loop, does not have); ``drain`` at shut-down gives the waiting jobs a bounded
time to finish, then drops the rest with one warning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

__all__ = ["BackgroundWork", "Job"]

log = structlog.get_logger("kb.background")

Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    job: Job
    context: dict[str, Any] = field(default_factory=dict)


class BackgroundWork:
    """A bounded queue of post-response jobs and the one task that runs them."""

    def __init__(
        self,
        *,
        max_size: int,
        job_timeout_s: float,
        on_depth: Callable[[int], None] | None = None,
        on_dropped: Callable[[str], None] | None = None,
    ) -> None:
        self.max_size = max_size
        self.job_timeout_s = job_timeout_s
        self._on_depth = on_depth or (lambda _depth: None)
        self._on_dropped = on_dropped or (lambda _name: None)
        self._queue: asyncio.Queue[_Entry] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Jobs waiting (the one running not included)."""
        return 0 if self._queue is None else self._queue.qsize()

    def submit(self, name: str, job: Job, **context: Any) -> bool:
        """Enqueue ``job`` (call it from the event loop); False when it was dropped (queue full,
        or shutting down). ``context`` goes into the failure's log line (a request id)."""
        if self._closed:
            log.warning("background_job_dropped", job=name, reason="shutting down", **context)
            self._on_dropped(name)
            return False
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:
            # A queue belongs to one event loop: a new loop (``asyncio.run`` again, in a CLI or
            # a test) gets a new queue and worker; the old loop's are gone with it.
            self._queue = asyncio.Queue(maxsize=self.max_size)
            self._loop = loop
            self._worker = None
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(self._queue), name="kb-background")
        try:
            self._queue.put_nowait(_Entry(name, job, context))
        except asyncio.QueueFull:
            log.warning(
                "background_job_dropped", job=name, reason="queue full", queued=self.max_size, **context
            )
            self._on_dropped(name)
            return False
        self._on_depth(self._queue.qsize())
        return True

    async def _work(self, queue: asyncio.Queue[_Entry]) -> None:
        while True:
            entry = await queue.get()
            self._on_depth(queue.qsize())
            try:
                async with asyncio.timeout(self.job_timeout_s):
                    await entry.job()
            except TimeoutError:
                log.warning(
                    "background_job_failed",
                    job=entry.name,
                    error=f"timed out after {self.job_timeout_s} s",
                    **entry.context,
                )
            except Exception as exc:  # a job's failure is logged, never surfaced: by design
                log.warning("background_job_failed", job=entry.name, error=_describe(exc), **entry.context)
            finally:
                queue.task_done()

    async def drain(self, timeout_s: float) -> None:
        """Stop taking jobs, let the waiting ones finish for up to ``timeout_s``, then stop."""
        self._closed = True
        queue, worker = self._queue, self._worker
        if queue is None or worker is None:
            return
        if not worker.done():
            try:
                async with asyncio.timeout(timeout_s):
                    await queue.join()
            except TimeoutError:
                log.warning("background_jobs_abandoned", jobs=queue.qsize(), timeout_s=timeout_s)
        worker.cancel()
        with contextlib.suppress(BaseException):
            await worker
        self._on_depth(0)


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}".rstrip(": ")
