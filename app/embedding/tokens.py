"""Token counts, ids and offsets on the model's tokenizer, off the model's lock.

Chunking, the query policy, validation and the offline answerer count tokens far more often than
the model encodes, often on the event loop. Sharing the lock that serialises ``encode`` would
make every count wait for a whole batch to embed, so counting gets its own copy of the tokenizer
and its own lock. A fast (Rust) tokenizer raises "Already borrowed" when two threads use it at
once, hence a lock at all.

With a fast tokenizer the copy's Rust ``tokenizers.Tokenizer`` is called directly: the
``transformers`` wrapper around it turns every result into dicts and lists the count never reads,
which costs about as much as the tokenization itself on chunk-sized texts. The wrapper switches
truncation and padding off for such a call; the private copy has them switched off once, so both
routes give the same tokens.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

__all__ = ["TextTokenizer"]


class TextTokenizer:
    """``count``, ``ids`` and ``offsets`` of the ``Tokenizer`` protocol, on a private copy of
    ``tokenizer`` (a ``transformers`` tokenizer)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()
        backend = getattr(self._tokenizer, "backend_tokenizer", None)
        if backend is not None:
            # Model inputs are cut and padded by the model's own tokenizer; a count is of the text.
            backend.no_truncation()
            backend.no_padding()
        self._backend = backend

    def count(self, text: str) -> int:
        return len(self.ids(text))

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text``, without special tokens."""
        with self._lock:
            if self._backend is not None:
                ids: list[int] = self._backend.encode(text, add_special_tokens=False).ids
                return ids
            # verbose=False: counting a long section is the point here, not a model-input overflow.
            encoded = self._tokenizer(
                text, add_special_tokens=False, return_attention_mask=False, verbose=False
            )
        return list(encoded["input_ids"])

    def offsets(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            if self._backend is not None:
                spans: list[tuple[int, int]] = self._backend.encode(text, add_special_tokens=False).offsets
                return spans
            encoded = self._tokenizer(
                text,
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
                verbose=False,
            )
        return [tuple(span) for span in encoded["offset_mapping"]]
