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

``TokenFrame`` (from ``token_frame``) goes the other way: it turns token ids that ingestion has
already counted back into the model inputs the tokenizer would have built, so that an embedder's
``embed_ids`` does not tokenize those texts a second time. Both backends use it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TextTokenizer", "TokenFrame", "token_frame"]


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


@dataclass(frozen=True, slots=True)
class TokenFrame:
    """What a tokenizer adds around one text's token ids to make a model input: its special
    tokens (``prefix``, ``suffix``; BERT: ``[CLS]`` and ``[SEP]``), the id it pads a batch with,
    and the inputs it returns (``names``, its ``model_input_names``).

    Made by ``token_frame``, which checks on the tokenizer itself that this is all it does, so
    ``inputs`` can stand in for a batch's tokenizer call when the ids are known.
    """

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    pad_id: int
    names: frozenset[str]

    def inputs(self, token_ids: Sequence[Sequence[int]], *, limit: int) -> dict[str, np.ndarray] | None:
        """The batch the tokenizer returns for texts whose ids (no special tokens) are
        ``token_ids``: framed, right-padded to the longest with the pad id, the attention mask and
        token types (all 0, one text per row) when the tokenizer returns them; int64 arrays of
        shape ``(len(token_ids), longest)``.

        ``None`` when a row is over ``limit`` (the model's input limit, special tokens included)
        once framed: the tokenizer would truncate it, so the caller tokenizes that batch instead.
        """
        rows = [[*self.prefix, *ids, *self.suffix] for ids in token_ids]
        width = max((len(row) for row in rows), default=0)
        if width > limit:
            return None
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        features = {"input_ids": input_ids}
        if "token_type_ids" in self.names:
            features["token_type_ids"] = np.zeros((len(rows), width), dtype=np.int64)
        if "attention_mask" in self.names:
            features["attention_mask"] = mask
        return features


def token_frame(tokenizer: Any) -> TokenFrame | None:
    """The ``TokenFrame`` of ``tokenizer`` (a ``transformers`` tokenizer), found by tokenizing a
    probe with and without special tokens.

    ``None`` when its special tokens are not such a fixed frame around a text's own tokens, and
    for a tokenizer that pads on the left or has no pad token, which ``TokenFrame.inputs`` does
    not reproduce: then ``embed_ids`` always lets the tokenizer do it.
    """
    pad_id = tokenizer.pad_token_id
    if getattr(tokenizer, "padding_side", "right") != "right" or pad_id is None:
        return None
    probe = "a probe, of some words"
    try:
        plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(probe)["input_ids"])
        empty = list(tokenizer("")["input_ids"])
        names = frozenset(tokenizer.model_input_names)
    except Exception:  # a tokenizer without this call: no frame to rely on
        return None
    for start in range(len(full) - len(plain) + 1):
        prefix, suffix = full[:start], full[start + len(plain) :]
        if full[start : start + len(plain)] == plain and prefix + suffix == empty:
            return TokenFrame(tuple(prefix), tuple(suffix), int(pad_id), names)
    return None
