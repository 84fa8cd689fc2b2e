"""Token counts of chunk texts, remembered: ranking counts the same chunks for many questions.

Fitting the context to its token budget counts every selected chunk's text, and the prompt's
per-document overhead counts them again, on every request, on the event loop and before the
``retrieval`` event can be sent. The chunks that answer questions repeat across questions, so
their counts are kept (the least recently used dropped beyond ``size``); other texts (prompts,
answers) are counted by the counter itself, never through this.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RememberedCounts"]


class RememberedCounts:
    """``count`` of ``counter``, remembering the last ``size`` texts it was asked about.

    Thread-safe (``kb eval`` ranks on its own threads). The counter must be a pure function of
    the text, as token counters are."""

    def __init__(self, counter: Callable[[str], int], *, size: int = 4096) -> None:
        if size < 1:
            raise ValueError(f"remembers at least one text, not {size}")
        self._counter = counter
        self._size = size
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        with self._lock:
            known = self._counts.get(text)
            if known is not None:
                self._counts.move_to_end(text)
                return known
        tokens = self._counter(text)
        with self._lock:
            self._counts[text] = tokens
            if len(self._counts) > self._size:
                self._counts.popitem(last=False)
        return tokens

    def __call__(self, text: str) -> int:
        return self.count(text)
