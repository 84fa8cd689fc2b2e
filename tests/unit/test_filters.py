"""Request filters: decoded strictly, and turned into store conditions on what users see, always
within the caller's tenant."""

from __future__ import annotations

import re

import msgspec
import pytest
from qdrant_client import models

from app.store import (
    MAX_FILTER_SOURCES,
    SHARED_TENANT,
    RetrievalFilters,
    TenantError,
    filter_for,
    valid_tenant,
)

pytestmark = pytest.mark.unit


def decode(body: bytes) -> RetrievalFilters:
    return msgspec.json.decode(body, type=RetrievalFilters)


TENANT = models.FieldCondition(key="tenant", match=models.MatchAny(any=["acme", SHARED_TENANT]))


def test_sources_match_document_paths_exactly_in_normal_form() -> None:
    filters = decode(b'{"sources": ["docs/ingestion.md", "./docs/asking.md", "docs\\\\ingestion.md"]}')

    _, condition = filter_for(filters, tenant="acme").must

    assert condition.key == "source"
    assert condition.match == models.MatchAny(any=["docs/asking.md", "docs/ingestion.md"])


def test_sources_and_a_prefix_must_both_hold() -> None:
    built = filter_for(RetrievalFilters(sources=["docs/a.md"], source_prefix="docs/"), tenant="acme")
    assert [c.key for c in built.must] == ["tenant", "source", "path_prefixes"]
    assert built.must[2].match == models.MatchValue(value="docs")


def test_without_filters_a_search_sees_its_tenants_and_the_shared_documents() -> None:
    assert filter_for(None, tenant="acme") == models.Filter(must=[TENANT])
    assert filter_for(RetrievalFilters(), tenant="acme") == models.Filter(must=[TENANT])


@pytest.mark.parametrize(
    "filters",
    [
        None,
        RetrievalFilters(sources=["beta/secret.md"]),
        RetrievalFilters(source_prefix="beta"),
        RetrievalFilters(sources=["beta/secret.md", "acme/a.md"], source_prefix="beta"),
    ],
)
def test_request_filters_only_narrow_the_tenant_condition(filters: RetrievalFilters | None) -> None:
    built = filter_for(filters, tenant="acme")

    # Every condition must hold, the tenant's first; nothing is an alternative to it.
    assert built.must[0] == TENANT
    assert built.should is None and built.must_not is None and built.min_should is None
    assert all(isinstance(c, models.FieldCondition) and c.key != "tenant" for c in built.must[1:])


def test_a_caller_of_the_shared_tenant_sees_only_the_shared_documents() -> None:
    (condition,) = filter_for(None, tenant=SHARED_TENANT).must
    assert condition.match == models.MatchAny(any=[SHARED_TENANT])


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


@pytest.mark.parametrize("name", ["default", "acme", "team-a.eu_1", "A" * 64])
def test_a_tenant_name_is_what_a_keys_tenant_may_be(name: str) -> None:
    assert valid_tenant(name) == name


@pytest.mark.parametrize(
    "name", ["", " acme", "acme/docs", "a b", "-acme", "A" * 65, "acme\n", SHARED_TENANT]
)
def test_other_tenant_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(TenantError) as refused:
        valid_tenant(name)
    assert ("--shared" if name == SHARED_TENANT else "letters, digits") in refused.value.message
