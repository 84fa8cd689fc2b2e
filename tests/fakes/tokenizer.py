"""A deterministic tokenizer for unit tests: every run of non-space characters is one token.

It satisfies ``app.text.tokens.Tokenizer`` (count and offsets), so chunking and budgets can be
specified without loading the embedding model; the real tokenizer's guarantees are checked in
tests/integration/test_chunking.py.
"""

from __future__ import annotations

import re

__all__ = ["WordTokenizer"]

_TOKEN = re.compile(r"\S+")


class WordTokenizer:
    """One token per whitespace-separated word; ``max_tokens`` is what an embedder would report."""

    def __init__(self, max_tokens: int = 256) -> None:
        self.max_tokens = max_tokens

    def count(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in _TOKEN.finditer(text)]
