"""Token counts and offsets on the model's tokenizer, off the model's lock.

Chunking, the query policy, validation and the offline answerer count tokens far more often than
the model encodes, often on the event loop. Sharing the lock that serialises ``encode`` would
make every count wait for a whole batch to embed, so counting gets its own copy of the tokenizer
and its own lock. A fast (Rust) tokenizer raises "Already borrowed" when two threads use it at
once, hence a lock at all.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

__all__ = ["TextTokenizer"]


class TextTokenizer:
    """``count`` and ``offsets`` of the ``Tokenizer`` protocol, on a private copy of ``tokenizer``."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        # verbose=False: counting a long section is the point here, not a model-input overflow.
        with self._lock:
            encoded = self._tokenizer(
                text, add_special_tokens=False, return_attention_mask=False, verbose=False
            )
        return len(encoded["input_ids"])

    def offsets(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            encoded = self._tokenizer(
                text,
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
                verbose=False,
            )
        return [tuple(span) for span in encoded["offset_mapping"]]
