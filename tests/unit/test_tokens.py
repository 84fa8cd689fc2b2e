"""The token estimate used for budgets must not under-count what Claude will see."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from app.text.tokens import ClaudeTokenEstimate, TokenCounter

pytestmark = pytest.mark.unit

ENGLISH = (
    "To rotate an API key, open the developer console, choose the key and select Rotate. "
    "The old key keeps working for twenty-four hours so deployments can switch over."
)
CODE = """def retry(fn, attempts=3):
    for i in range(attempts):
        try:
            return fn()
        except (TimeoutError, ConnectionError) as exc:
            log.warning("retry %d/%d: %s", i + 1, attempts, exc)
    raise RuntimeError("gave up")
"""
CJK = "知识库暂时无法搜索，请稍后再试。検索できませんでした。지식 베이스를 검색할 수 없습니다."
MIXED = "Der Schlüssel wird über die Konsole rotiert — danach gilt der alte noch 24 Stunden."

estimate = ClaudeTokenEstimate()


def bpe_pieces(text: str) -> int:
    """A crude BPE-like count: letter/digit runs and runs of symbols, one token each."""
    return len(re.findall(r"[^\W_]+|[^\w\s]+|_", text))


def test_empty_text_is_zero_tokens() -> None:
    assert estimate.count("") == 0


def test_is_a_token_counter_and_a_plain_callable() -> None:
    assert isinstance(estimate, TokenCounter)
    as_callable: Callable[[str], int] = estimate
    assert as_callable(ENGLISH) == estimate.count(ENGLISH)


@pytest.mark.parametrize("text", [ENGLISH, CODE, CJK, MIXED], ids=["english", "code", "cjk", "mixed"])
def test_never_fewer_than_whitespace_words_or_a_token_per_four_characters(text: str) -> None:
    assert estimate.count(text) >= len(text.split())
    assert estimate.count(text) >= len(text) / 4


def test_english_prose_counts_more_than_anthropics_3_5_characters_per_token() -> None:
    assert estimate.count(ENGLISH) >= len(ENGLISH) / 3.5


def test_code_counts_at_least_one_token_per_word_and_symbol_run() -> None:
    assert estimate.count(CODE) >= bpe_pieces(CODE)


def test_cjk_counts_at_least_one_token_per_character() -> None:
    cjk_chars = sum(1 for ch in CJK if not ch.isspace() and not ch.isascii())
    assert estimate.count(CJK) >= cjk_chars
    # Supplementary-plane ideographs (4 bytes each) still count one token apiece.
    assert estimate.count("𠀀𠀁𠀂𠀃𠀄𠀅") >= 6


def test_digits_and_emoji_are_not_undercounted() -> None:
    # Tokenizers split long numbers into groups of at most three digits.
    assert estimate.count("1234567890") >= 4
    assert estimate.count("👍" * 10) >= 10


def test_estimate_is_subadditive_so_parts_bound_the_whole() -> None:
    parts = [ENGLISH, CODE, CJK, MIXED, "x", " ", "\n\n"]
    for a in parts:
        for b in parts:
            assert estimate.count(a + b) <= estimate.count(a) + estimate.count(b)


def test_more_text_never_counts_fewer_tokens() -> None:
    counts = [estimate.count(ENGLISH[:end]) for end in range(0, len(ENGLISH) + 1, 7)]
    assert counts == sorted(counts)
