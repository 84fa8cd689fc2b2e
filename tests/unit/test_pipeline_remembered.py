"""``Remembered``: the function's own results, each text computed once while remembered."""

from __future__ import annotations

import pytest

from app.pipeline.remembered import Remembered
from app.text.tokens import ClaudeTokenEstimate


def test_counts_are_the_counters_and_a_remembered_text_is_not_counted_again() -> None:
    estimate = ClaudeTokenEstimate()
    asked: list[str] = []

    def counter(text: str) -> int:
        asked.append(text)
        return estimate.count(text)

    counts = Remembered(counter, size=2)
    texts = ["Deploys go through the release train.", "Ask in #ops.", "x86_64 builds only"]
    assert [counts(t) for t in texts[:2]] == [estimate.count(t) for t in texts[:2]]
    assert counts(texts[0]) == estimate.count(texts[0])
    assert asked == texts[:2]  # the repeat was remembered
    counts(texts[2])  # evicts the least recently used: texts[1]
    counts(texts[0])
    counts(texts[1])
    assert asked == [*texts[:2], texts[2], texts[1]]


def test_remembers_at_least_one_text() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Remembered(len, size=0)
