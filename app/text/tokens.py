"""Token counting: the one counter protocol, and a conservative estimate of Claude's count.

``TokenCounter`` is what every budget depends on (question length, chunk size, prompt context).
The embedding model's tokenizer implements it (plus ``offsets``, as a ``Tokenizer``, which
chunking needs to cut at token boundaries, and ``ids``, as an ``IdTokenizer``, so that the ids a
chunk was counted with can be handed to the model instead of tokenizing it twice);
``ClaudeTokenEstimate`` implements it for prompts.

Claude's tokenizer is not public, so budgets (context size, question length) are checked against
an estimate that errs on the side of counting *more* tokens than the model will. Over-counting
wastes a little context; under-counting would overflow budgets the rest of the pipeline relies on.
"""

from __future__ import annotations

import math
import re
from typing import Protocol, runtime_checkable

__all__ = ["ClaudeTokenEstimate", "IdTokenizer", "TokenCounter", "Tokenizer"]


@runtime_checkable
class TokenCounter(Protocol):
    """Anything that counts the tokens of a text."""

    def count(self, text: str) -> int:
        """Number of tokens of ``text`` (no special tokens)."""
        ...


@runtime_checkable
class Tokenizer(TokenCounter, Protocol):
    """A token counter that also tells where each token is."""

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of ``text`` (no special tokens), in order."""
        ...


@runtime_checkable
class IdTokenizer(Tokenizer, Protocol):
    """A tokenizer that also gives the token ids themselves."""

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text`` (no special tokens); ``count`` is their number."""
        ...


# Runs of letters/digits (a "word" to a BPE tokenizer) and single symbols, which BPE vocabularies
# rarely merge with letters (brackets, operators, punctuation in code and markup).
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_SYMBOL_RE = re.compile(r"[^\w\s]|_", re.UNICODE)
# CJK ideographs, kana, hangul and CJK punctuation/fullwidth forms: about one token per character.
_CJK_RE = re.compile(
    r"[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3200-\u9fff\ua960-\ua97f"
    r"\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)

# Why these three bounds, and why the largest of them:
# * bytes / 3.0: Anthropic quotes roughly 3.5 characters per token for English prose; dividing
#   UTF-8 bytes by 3 leaves ~15% margin there, and counts accented and other multi-byte scripts
#   (Cyrillic, Greek: 2 bytes a letter) closer to their real, higher token density.
# * 1.4 tokens per word + 0.5 per symbol: short-word text and code have fewer characters per
#   token than prose (``x = f(a, b);`` is ~7 tokens in 12 bytes); long or rare words split into
#   several pieces, and symbols often become tokens of their own.
# * 1 token per CJK character (+ the rest by bytes): CJK text is roughly one token per character,
#   more than bytes / 3 gives for the 4-byte supplementary ideographs.
_BYTES_PER_TOKEN = 3.0
_TOKENS_PER_WORD = 1.4
_TOKENS_PER_SYMBOL = 0.5


class ClaudeTokenEstimate:
    """Conservative token count for Claude models: the largest of three cheap estimates.

    It is designed to over-count typical English, code and CJK text, never to match exactly.
    It is sub-additive (``count(a + b) <= count(a) + count(b)``), so summing the counts of the
    parts of a prompt bounds the count of the whole.
    """

    def count(self, text: str) -> int:
        if not text:
            return 0
        n_bytes = len(text.encode("utf-8"))
        by_bytes = n_bytes / _BYTES_PER_TOKEN
        by_words = _TOKENS_PER_WORD * len(_WORD_RE.findall(text)) + _TOKENS_PER_SYMBOL * len(
            _SYMBOL_RE.findall(text)
        )
        cjk = _CJK_RE.findall(text)
        if cjk:
            cjk_bytes = sum(len(ch.encode("utf-8")) for ch in cjk)
            by_script = len(cjk) + (n_bytes - cjk_bytes) / _BYTES_PER_TOKEN
        else:
            by_script = 0.0
        return math.ceil(max(by_bytes, by_words, by_script))

    def __call__(self, text: str) -> int:
        """Lets an instance be passed where a ``Callable[[str], int]`` is expected."""
        return self.count(text)
