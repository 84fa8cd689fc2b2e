"""``EmbeddingBatcher``: questions that arrive together share one call of the model.

The model call is serialised (one lock in the adapter), so N questions embedded one call each
wait for each other anyway, and pay the per-call overhead N times. The batcher is an
``Embedder`` whose calls are queued to one thread that embeds everything queued in one call:
``submit`` returns a future (the retriever awaits it on the event loop, holding no thread while
it waits), ``embed`` waits for it (``kb eval`` and other blocking callers).

A batch takes what is queued, up to ``max_batch`` texts. While the model is busy, questions
gather by themselves; besides, a question arriving within ``window_s`` of the previous one waits
up to ``window_s`` (from its arrival) for company, so that a burst shares calls even when the
model is idle. A question after a quiet spell is embedded at once: a lone request pays no
window. An item is dropped before its batch when its future was cancelled (its retrieval timed
out, or its client left) or its ``deadline`` has passed.

Over a ``QueryEmbeddingCache`` the batcher answers a question the cache holds at once, without
queueing it; a batch's misses are embedded by the cache, in one model call.

Other work on the same model (the offline answerer reads a few dozen sentences per answer by
meaning) goes through ``background``: an ``Embedder`` whose calls queue behind questions. A
question waits at most for the one batch the model is running, never for a backlog of answers;
so that answers still progress under a steady stream of questions, a background call that has
waited ``background_wait_s`` gets the next turn, then questions again (at worst the two
alternate). Background texts bypass the question cache (sentences would evict questions).

``count`` remembers the token counts of the last ``count_cache`` texts. The query policy counts
the question and the texts of its best hits on every retrieval, and hits repeat across
questions; the model's tokenizer shares the model's lock, so an uncached count made by a store
worker waits for the batch being embedded.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from app.embedding.cache import QueryEmbeddingCache
from app.embedding.protocol import Embedder

__all__ = ["BackgroundEmbedder", "EmbeddingBatcher", "EmbeddingExpired"]


class EmbeddingExpired(TimeoutError):
    """The texts' deadline passed before their batch was formed; they were not embedded."""


@dataclass(eq=False, slots=True)
class _Pending:
    texts: list[str]
    future: Future[np.ndarray]
    arrived: float
    deadline: float | None
    accompanied: bool
    """Whether it arrived within the window of the previous item: more are likely coming."""
    background: bool = False
    """Work that yields to questions (``EmbeddingBatcher.background``)."""


class EmbeddingBatcher:
    """An ``Embedder`` that gathers concurrent calls into batches for ``embedder``.

    Thread-safe. The batch thread starts with the first call and is a daemon.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        window_s: float = 0.002,
        max_batch: int = 32,
        count_cache: int = 4096,
        background_wait_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """``on_batch`` is told the size (texts) of every question batch; ``count_cache`` texts'
        token counts are remembered (0: none); a background call waiting ``background_wait_s``
        goes before the questions queued after it."""
        if max_batch < 1:
            raise ValueError(f"a batch holds at least one text, not {max_batch}")
        if window_s < 0:
            raise ValueError(f"the batch window cannot be negative: {window_s}")
        if count_cache < 0:
            raise ValueError(f"the count cache cannot hold a negative number of texts: {count_cache}")
        if background_wait_s < 0:
            raise ValueError(f"the background wait cannot be negative: {background_wait_s}")
        self.embedder = embedder
        self.model_name = embedder.model_name
        self.dimension = embedder.dimension
        self.max_tokens = embedder.max_tokens
        self.window_s = window_s
        self.max_batch = max_batch
        self._clock = clock
        self._on_batch = on_batch
        self.background_wait_s = background_wait_s
        self._cache = embedder if isinstance(embedder, QueryEmbeddingCache) else None
        self._model: Embedder = self._cache.embedder if self._cache is not None else embedder
        self.background = BackgroundEmbedder(self)
        """The lane for work that yields to questions (the offline answerer's sentences)."""
        self._count_cache = count_cache
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._count_lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._waiting_background: deque[_Pending] = deque()
        self._background_last = False
        self._last_arrival = float("-inf")
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def submit(
        self, texts: Sequence[str], *, deadline: float | None = None, background: bool = False
    ) -> Future[np.ndarray]:
        """The vectors of ``texts``, shape ``(len(texts), dimension)``, once their batch is done.

        ``deadline`` (on this batcher's clock, ``time.monotonic`` by default): past it, the texts
        are dropped instead of embedded (``EmbeddingExpired``). Cancel the future to drop them.
        ``background``: queued behind questions (see the module's docstring)."""
        future: Future[np.ndarray] = Future()
        if not texts:
            future.set_result(np.zeros((0, self.dimension), dtype=np.float32))
            return future
        if self._cache is not None and not background:
            known = self._cache.cached(texts)
            if known is not None:
                future.set_result(known)
                return future
        now = self._clock()
        with self._lock:
            if self._closed:
                raise RuntimeError("the embedding batcher is closed")
            if background:
                self._waiting_background.append(_Pending(list(texts), future, now, deadline, False, True))
            else:
                accompanied = now - self._last_arrival <= self.window_s
                self._last_arrival = now
                self._pending.append(_Pending(list(texts), future, now, deadline, accompanied))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kb-embed-batch", daemon=True)
                self._thread.start()
            self._arrived.notify()
        return future

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.submit(texts).result()

    def count(self, text: str) -> int:
        if not self._count_cache:
            return self.embedder.count(text)
        with self._count_lock:
            known = self._counts.get(text)
            if known is not None:
                self._counts.move_to_end(text)
                return known
        tokens = self.embedder.count(text)  # outside the lock: it may wait for the model
        with self._count_lock:
            self._counts[text] = tokens
            self._counts.move_to_end(text)
            while len(self._counts) > self._count_cache:
                self._counts.popitem(last=False)
        return tokens

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self.embedder.offsets(text)

    def close(self, *, wait_s: float = 0.0) -> None:
        """Stop the batch thread after its current call, waiting up to ``wait_s`` for it; what
        waits is cancelled."""
        with self._lock:
            self._closed = True
            waiting = [*self._pending, *self._waiting_background]
            self._pending.clear()
            self._waiting_background.clear()
            self._arrived.notify_all()
            thread = self._thread
        for item in waiting:
            item.future.cancel()
        if thread is not None and thread is not threading.current_thread() and wait_s > 0:
            thread.join(wait_s)

    # -- the batch thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._embed(batch)

    def _next_batch(self) -> list[_Pending] | None:
        with self._lock:
            while not self._pending and not self._waiting_background and not self._closed:
                self._arrived.wait()
            if self._closed:
                return None
            if self._background_turn():
                self._background_last = True
                return self._take(self._waiting_background)
            self._background_last = False
            first = self._pending[0]
            if first.accompanied and self.window_s > 0:
                until = first.arrived + self.window_s
                while not self._closed and self._queued_texts() < self.max_batch:
                    left = until - self._clock()
                    if left <= 0:
                        break
                    self._arrived.wait(left)
            return self._take(self._pending)

    def _background_turn(self) -> bool:
        """Whether the next batch is background work: when no question waits, or when the oldest
        background call has waited its turn and the last batch was questions."""
        if not self._waiting_background:
            return False
        if not self._pending:
            return True
        overdue = self._clock() - self._waiting_background[0].arrived >= self.background_wait_s
        return overdue and not self._background_last

    def _take(self, queue: deque[_Pending]) -> list[_Pending]:
        """The next batch from ``queue``: whole calls, up to ``max_batch`` texts (at least one call)."""
        batch: list[_Pending] = []
        size = 0
        while queue and (not batch or size + len(queue[0].texts) <= self.max_batch):
            item = queue.popleft()
            batch.append(item)
            size += len(item.texts)
        return batch

    def _queued_texts(self) -> int:
        return sum(len(item.texts) for item in self._pending)

    def _embed(self, batch: list[_Pending]) -> None:
        now = self._clock()
        live: list[_Pending] = []
        for item in batch:
            if not item.future.set_running_or_notify_cancel():
                continue  # its retrieval is over: dropped unembedded
            if item.deadline is not None and now >= item.deadline:
                item.future.set_exception(EmbeddingExpired("the deadline passed before the batch"))
                continue
            live.append(item)
        if not live:
            return
        texts = [text for item in live for text in item.texts]
        background = live[0].background  # a batch is one lane's
        try:
            vectors = (self._model if background else self.embedder).embed(texts)
        except BaseException as exc:  # every waiter gets the model's failure as its own
            for item in live:
                item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if self._on_batch is not None and not background:
            self._on_batch(len(texts))
        start = 0
        for item in live:
            end = start + len(item.texts)
            item.future.set_result(vectors[start:end])
            start = end


class BackgroundEmbedder:
    """An ``Embedder`` over an ``EmbeddingBatcher``'s model whose calls yield to its questions."""

    def __init__(self, batcher: EmbeddingBatcher) -> None:
        self._batcher = batcher
        self.model_name = batcher.model_name
        self.dimension = batcher.dimension
        self.max_tokens = batcher.max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._batcher.submit(texts, background=True).result()

    def count(self, text: str) -> int:
        return self._batcher.count(text)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self._batcher.offsets(text)
