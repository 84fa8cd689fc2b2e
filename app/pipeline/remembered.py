"""Pure functions of chunk texts, remembered: the same chunks come back for many questions.

Fitting the context to its token budget counts every selected chunk's text, the prompt's
per-document overhead counts them again, and section completion reads their index terms, on
every request, on the event loop and before the ``retrieval`` event can be sent. The chunks that
answer questions repeat across questions, so those results are kept (the least recently used
dropped beyond ``size``); other texts (prompts, answers) go to the function itself, never
through this.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Remembered"]

T = TypeVar("T")


class Remembered(Generic[T]):
    """``function`` of a text, remembering its result for the last ``size`` texts.

    Thread-safe (``kb eval`` ranks on its own threads). ``function`` must be a pure function of
    the text, as token counters and term analysis are."""

    def __init__(self, function: Callable[[str], T], *, size: int = 4096) -> None:
        if size < 1:
            raise ValueError(f"remembers at least one text, not {size}")
        self._function = function
        self._size = size
        self._results: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> T:
        with self._lock:
            if text in self._results:
                self._results.move_to_end(text)
                return self._results[text]
        result = self._function(text)
        with self._lock:
            self._results[text] = result
            if len(self._results) > self._size:
                self._results.popitem(last=False)
        return result
