"""Request filters: decoded strictly, and turned into store conditions on what users see."""

from __future__ import annotations

import re

import msgspec
import pytest
from qdrant_client import models

from app.store import MAX_FILTER_SOURCES, RetrievalFilters, filter_for

pytestmark = pytest.mark.unit


def decode(body: bytes) -> RetrievalFilters:
    return msgspec.json.decode(body, type=RetrievalFilters)


def test_sources_match_document_paths_exactly_in_normal_form() -> None:
    filters = decode(b'{"sources": ["docs/ingestion.md", "./docs/asking.md", "docs\\\\ingestion.md"]}')

    (condition,) = filter_for(filters).must

    assert condition.key == "source"
    assert condition.match == models.MatchAny(any=["docs/asking.md", "docs/ingestion.md"])


def test_sources_and_a_prefix_must_both_hold() -> None:
    built = filter_for(RetrievalFilters(sources=["docs/a.md"], source_prefix="docs/"))
    assert [c.key for c in built.must] == ["source", "path_prefixes"]
    assert built.must[1].match == models.MatchValue(value="docs")


def test_no_filters_is_no_condition() -> None:
    assert filter_for(None) is None
    assert filter_for(RetrievalFilters()) is None


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b'{"sources": []}', "length >= 1"),
        (b'{"sources": [""]}', "length >= 1"),
        (b'{"sources": ["  "]}', "must not be blank"),
        (b'{"sources": "docs/a.md"}', "Expected `array | null`, got `str`"),
        (b'{"sources": [3]}', "Expected `str`"),
        (b'{"sources": ["' + b"x" * 1025 + b'"]}', "length <= 1024"),
        (b'{"source_prefix": "' + b"x" * 1025 + b'"}', "length <= 1024"),
        (b'{"doc_ids": ["docs/a.md"]}', "unknown field `doc_ids`"),
    ],
)
def test_bad_filters_are_refused_while_decoding(body: bytes, mentions: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(mentions)):
        decode(body)


def test_the_number_of_paths_is_bounded() -> None:
    paths = [f"docs/{n}.md" for n in range(MAX_FILTER_SOURCES)]
    assert decode(msgspec.json.encode({"sources": paths})).sources == paths
    with pytest.raises(msgspec.ValidationError, match=f"length <= {MAX_FILTER_SOURCES}"):
        decode(msgspec.json.encode({"sources": [*paths, "docs/one-more.md"]}))
