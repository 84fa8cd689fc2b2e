"""Which sources an answer cites: bracketed numbers in the forms the prompt asks for."""

from __future__ import annotations

import pytest

from app.postprocess import extract_citations

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Keys rotate daily [1].", [1]),
        ("Keys rotate daily [2] and expire [1].", [2, 1]),
        ("Both say so [1, 3].", [1, 3]),
        ("Both say so [1,3] [ 2 ].", [1, 3, 2]),
        ("Adjacent groups [1][2].", [1, 2]),
        ("A range [1-3].", [1, 2, 3]),
        ("An en-dash range [2–3].", [2, 3]),
        ("Mixed [1, 3-4].", [1, 3, 4]),
        ("Semicolons [1; 2].", [1, 2]),
    ],
)
def test_recognised_citation_forms(answer: str, expected: list[int]) -> None:
    assert extract_citations(answer, source_count=4) == expected


def test_each_source_once_in_order_of_first_appearance() -> None:
    assert extract_citations("First [3]. Then [1]. Again [3][1]. Finally [2].", 3) == [3, 1, 2]


def test_numbers_out_of_range_are_ignored() -> None:
    assert extract_citations("See [0], [4] and [2].", source_count=3) == [2]


def test_a_range_keeps_only_its_in_range_part() -> None:
    assert extract_citations("See [2-9].", source_count=3) == [2, 3]
    assert extract_citations("See [1-999999999].", source_count=2) == [1, 2]


def test_a_reversed_range_cites_nothing() -> None:
    assert extract_citations("See [3-1].", source_count=3) == []


@pytest.mark.parametrize(
    "answer",
    [
        "Option [a] or [b].",
        "See [the docs](https://example.com/1).",
        "See [1](https://example.com/1).",
        "[1]: https://example.com/reference-definition",
        "A footnote[^1].",
        "Call `items[1]` to get the second one.",
        "```python\nfirst = rows[2]\n```",
        "Empty [] brackets and [1 2] without a comma.",
        "Version [v1] and [#3].",
    ],
)
def test_things_that_are_not_citations(answer: str) -> None:
    assert extract_citations(answer, source_count=5) == []


def test_citations_outside_code_still_count_when_code_is_present() -> None:
    answer = "Use `xs[2]` as shown [1].\n```\nys[3]\n```\nAlso [4]."
    assert extract_citations(answer, source_count=4) == [1, 4]


def test_no_sources_means_no_citations() -> None:
    assert extract_citations("Says [1].", source_count=0) == []
