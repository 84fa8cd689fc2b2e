"""Admission control for retrieval: a bound on retrievals in flight, and deadlines on their work.

A burst of questions must not become a backlog that outlives it. ``AdmissionQueue`` admits at
most ``capacity`` retrievals at once (``retrieval.queue_size``): each one holds a ``Slot`` from
the moment it is admitted until its work is done or dropped, whether it is waiting for the
embedding model, waiting for a store worker or running. One more is refused at once (``admit``
returns None) and the retriever answers it with the status ``timeout`` and a detail saying the
service is busy.

The slot's store work goes to a small pool of threads (``retrieval.search_workers``) through a
FIFO queue. Each item carries its retrieval's deadline and is dropped before it runs when the
deadline has passed (``WorkExpired``) or its future was cancelled (the request timed out or its
client left: ``asyncio.wrap_future`` cancels the pending future, and a cancelled item leaves the
queue at once). Work that has started cannot be stopped (the store and the model are blocking
libraries): its slot stays taken until it finishes, so abandoned work still counts against the
bound, honestly, and never piles up behind it.

Drops and refusals are reported through ``on_dropped`` with a reason (``full``, ``expired``,
``cancelled``), the queue's depth through ``on_depth``: the service wires them to its metrics.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from app.settings import RetrievalSettings

__all__ = ["AdmissionQueue", "DropReason", "Slot", "WorkExpired", "default_search_workers", "queue_for"]

_T = TypeVar("_T")

DropReason = Literal["full", "expired", "cancelled"]
"""Why a retrieval's work never ran: refused (the queue was full), its deadline passed first, or
its request was cancelled first (timed out by the caller, or the client left)."""


class WorkExpired(TimeoutError):
    """The work's deadline passed before a worker could start it; it was not run."""


def default_search_workers(cores: int | None = None) -> int:
    """Store search threads for ``retrieval.search_workers = 0``: twice the cores, 2 to 8.

    Twice: a search spends part of its time in the engine or on the network without the GIL, and
    part in Python (fusion, calibration) with it."""
    count = cores if cores is not None else (os.cpu_count() or 1)
    return max(2, min(8, 2 * count))


def queue_for(
    settings: RetrievalSettings,
    *,
    on_depth: Callable[[int], None] | None = None,
    on_dropped: Callable[[DropReason], None] | None = None,
) -> AdmissionQueue:
    """The queue ``settings`` describe: ``queue_size`` retrievals, ``search_workers`` threads."""
    return AdmissionQueue(
        capacity=settings.queue_size,
        workers=settings.search_workers or default_search_workers(),
        on_depth=on_depth,
        on_dropped=on_dropped,
    )


@dataclass(eq=False, slots=True)
class _Item:
    fn: Callable[[], Any]
    future: Future[Any]
    deadline: float
    slot: Slot | None


@dataclass(eq=False, slots=True)
class Slot:
    """One admitted retrieval: its deadline and the work it queued (at most one item at a time).

    ``release`` when the retrieval is over, whatever its outcome: a queued item is cancelled and
    the slot freed at once; a running one frees the slot when it finishes."""

    queue: AdmissionQueue
    deadline: float
    started: bool = False
    """Whether a worker started this slot's work (as opposed to dropping it)."""
    _item: _Item | None = field(default=None, repr=False)
    _released: bool = field(default=False, repr=False)
    _freed: bool = field(default=False, repr=False)

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        """Queue ``fn`` for a store worker, with this slot's deadline."""
        item = self.queue._enqueue(fn, deadline=self.deadline, slot=self)
        self._item = item
        return item.future

    def release(self, *, cancelled: bool = False) -> None:
        """The retrieval is over. ``cancelled``: because its request was cancelled (the client
        left), which names the drop when its work never ran."""
        with self.queue._lock:
            # Under the queue's lock, which a worker holds while it starts an item: whether
            # this slot's work started is settled, one way or the other, here.
            if self._released:
                return
            self._released = True
            item = self._item
            unqueued = item is None or item.future.cancel()
            started = self.started
        if not started:
            # Over without its store work having run: its client left, or its deadline passed
            # (while embedding, or waiting for a worker); else it failed before (no drop).
            if cancelled:
                self.queue._dropped("cancelled")
            elif self.queue.clock() >= self.deadline:
                self.queue._dropped("expired")
        if item is None or unqueued:
            self._free()
        else:
            # Running (it cannot be stopped) or done: free the slot when it is over.
            item.future.add_done_callback(lambda _: self._free())

    def _free(self) -> None:
        self.queue._free(self)


class AdmissionQueue:
    """At most ``capacity`` retrievals in flight; their store work run by ``workers`` threads,
    oldest first, each item dropped unrun once its deadline has passed or it was cancelled.

    Thread-safe. Threads start with the first item and are daemons: a store call that hangs
    must not keep the process from exiting.
    """

    def __init__(
        self,
        *,
        capacity: int,
        workers: int,
        thread_name_prefix: str = "kb-retrieval",
        clock: Callable[[], float] = time.monotonic,
        on_depth: Callable[[int], None] | None = None,
        on_dropped: Callable[[DropReason], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"an admission queue admits at least one retrieval, not {capacity}")
        if workers < 1:
            raise ValueError(f"an admission queue needs at least one worker, not {workers}")
        self.capacity = capacity
        self.workers = workers
        self.clock = clock
        self._prefix = thread_name_prefix
        self._on_depth = on_depth
        self._on_dropped = on_dropped
        self._items: deque[_Item] = deque()
        self._admitted = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        # Reentrant: cancelling a future under it runs its callbacks, ``_settled`` among them.
        self._lock = threading.RLock()
        self._ready = threading.Condition(self._lock)

    @property
    def admitted(self) -> int:
        """Retrievals holding a slot now."""
        return self._admitted

    @property
    def depth(self) -> int:
        """Items waiting for a worker (not yet running)."""
        return len(self._items)

    def admit(self, timeout_s: float) -> Slot | None:
        """A slot whose deadline is ``timeout_s`` from now, or None (counted as ``full``) when
        ``capacity`` retrievals hold one."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the retrieval queue is closed")
            if self._admitted >= self.capacity:
                full = True
            else:
                full = False
                self._admitted += 1
        if full:
            self._dropped("full")
            return None
        return Slot(queue=self, deadline=self.clock() + timeout_s)

    def submit(self, fn: Callable[[], _T], *, timeout_s: float) -> Future[_T]:
        """Run ``fn`` on the next free worker, ahead of the queued searches and without a slot
        (a readiness probe: not a retrieval, so neither refused when the queue is full nor kept
        waiting behind a burst); dropped unrun if ``timeout_s`` passes before a worker starts it."""
        return self._enqueue(fn, deadline=self.clock() + timeout_s, slot=None, first=True).future

    def close(self, *, wait_s: float = 0.0) -> None:
        """Stop the workers once they finish what they run, waiting up to ``wait_s`` for that;
        cancel what waits. (A process that exits while a thread is inside the model or the
        store engine may abort in their native code: give it the time to finish.)"""
        with self._lock:
            self._closed = True
            waiting = list(self._items)
            self._items.clear()
            self._ready.notify_all()
            threads = list(self._threads)
        for item in waiting:
            item.future.cancel()
        self._report_depth(0)
        _join(threads, wait_s)

    # -- internals ---------------------------------------------------------------------------------

    def _enqueue(
        self, fn: Callable[[], _T], *, deadline: float, slot: Slot | None, first: bool = False
    ) -> _Item:
        future: Future[_T] = Future()
        item = _Item(fn=fn, future=future, deadline=deadline, slot=slot)
        with self._lock:
            if self._closed:
                raise RuntimeError("the retrieval queue is closed")
            if first:
                self._items.appendleft(item)
            else:
                self._items.append(item)
            depth = len(self._items)
            if len(self._threads) < self.workers:
                self._start_worker()
            self._ready.notify()
        future.add_done_callback(lambda done: self._settled(item, done))
        self._report_depth(depth)
        return item

    def _settled(self, item: _Item, done: Future[Any]) -> None:
        """A cancelled item leaves the queue now, not when a worker reaches it."""
        if not done.cancelled():
            return
        with self._lock:
            try:
                self._items.remove(item)
            except ValueError:
                return  # a worker took it already (and will find it cancelled)
            depth = len(self._items)
        self._report_depth(depth)

    def _start_worker(self) -> None:
        thread = threading.Thread(target=self._work, name=f"{self._prefix}-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._items and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                item = self._items.popleft()
                depth = len(self._items)
                # Decided under the lock (see ``Slot.release``): run it, or drop it unrun.
                live = item.future.set_running_or_notify_cancel()
                expired = live and self.clock() >= item.deadline
                if live and not expired and item.slot is not None:
                    item.slot.started = True
            self._report_depth(depth)
            if not live:
                continue  # cancelled: its retrieval is over
            if expired:
                item.future.set_exception(WorkExpired("the retrieval's deadline passed while it was queued"))
                continue
            try:
                result = item.fn()
            except BaseException as exc:  # the future carries any failure to its awaiter
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)

    def _free(self, slot: Slot) -> None:
        with self._lock:
            if slot._freed:
                return
            slot._freed = True
            self._admitted -= 1

    def _dropped(self, reason: DropReason) -> None:
        if self._on_dropped is not None:
            self._on_dropped(reason)

    def _report_depth(self, depth: int) -> None:
        if self._on_depth is not None:
            self._on_depth(depth)


def _join(threads: list[threading.Thread], wait_s: float) -> None:
    """Wait up to ``wait_s`` in all for ``threads`` to end (not for the calling thread)."""
    until = time.monotonic() + wait_s
    for thread in threads:
        left = until - time.monotonic()
        if left <= 0:
            return
        if thread is not threading.current_thread():
            thread.join(left)
