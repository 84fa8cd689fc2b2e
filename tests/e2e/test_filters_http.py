"""``POST /ask`` filters over real HTTP: documents are named the way answers show them.

The app (offline extractive answerer, real model, real embedded Qdrant holding
``tests/data/mixed``, ingested as the source ``mixed``) serves every test in this module.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.store import MAX_FILTER_SOURCES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def ask(client: httpx.Client, question: str, filters: dict[str, Any]) -> httpx.Response:
    return client.post("/ask", json={"question": question, "filters": filters, "stream": False})


def test_a_path_from_an_answers_sources_filters_to_that_document(client: httpx.Client) -> None:
    question = "How is the knowledge-base service run and operated?"  # several documents say
    unfiltered = client.post("/ask", json={"question": question, "stream": False}).json()
    shown = [s["source"] for s in unfiltered["sources"]]
    assert len(set(shown)) > 1, "the question should find several documents unfiltered"
    chosen = shown[-1]  # the one ranked last, so the filter is what brings it to the top

    body = ask(client, question, {"sources": [chosen]}).json()

    assert body["retrieval_status"] == "ok"
    assert {s["source"] for s in body["sources"]} == {chosen}


def test_the_documented_example_returns_that_document(client: httpx.Client) -> None:
    body = ask(client, "installation", {"sources": ["mixed/guide.md"]}).json()

    assert body["sources"]
    assert {s["source"] for s in body["sources"]} == {"mixed/guide.md"}


def test_several_paths_keep_any_of_those_documents(client: httpx.Client) -> None:
    body = ask(
        client,
        "When does the nightly ingestion job run?",
        {"sources": ["mixed/guide.md", "./mixed/notes.txt"]},
    ).json()

    assert body["sources"]
    assert {s["source"] for s in body["sources"]} <= {"mixed/guide.md", "mixed/notes.txt"}
    assert "03:00 UTC" in body["answer"]


def test_the_source_name_as_prefix_keeps_that_sources_documents(client: httpx.Client) -> None:
    body = ask(client, "installation", {"source_prefix": "mixed"}).json()

    assert body["sources"]
    assert all(s["source"].startswith("mixed/") for s in body["sources"])


def test_a_path_no_document_has_finds_nothing_and_says_so(client: httpx.Client) -> None:
    body = ask(client, "installation", {"sources": ["mixed/no-such-file.md"]}).json()

    assert body["retrieval_status"] == "empty"
    assert body["sources"] == [] and "nothing relevant" in body["answer"]


BAD_FILTERS: list[tuple[str, dict[str, Any], str]] = [
    # (case, filters, a word the message must contain)
    ("internal ids are not a filter", {"doc_ids": ["mixed/guide.md"]}, "doc_ids"),
    ("an empty list", {"sources": []}, "sources"),
    ("an empty path", {"sources": [""]}, "sources"),
    ("a blank path", {"sources": ["mixed/guide.md", "  "]}, "blank"),
    ("a path that is not a string", {"sources": [7]}, "sources"),
    ("one path instead of a list", {"sources": "mixed/guide.md"}, "sources"),
    ("too many paths", {"sources": [f"mixed/{n}.md" for n in range(MAX_FILTER_SOURCES + 1)]}, "sources"),
    ("an overlong path", {"sources": ["x" * 1025]}, "sources"),
]


@pytest.mark.parametrize(("case", "filters", "mentions"), BAD_FILTERS, ids=[c[0] for c in BAD_FILTERS])
def test_bad_filters_get_a_400_naming_the_problem(
    client: httpx.Client, case: str, filters: dict[str, Any], mentions: str
) -> None:
    response = ask(client, "installation", filters)

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"]["code"] == "invalid_body"
    assert mentions in body["error"]["message"], body


def _schemas_titled(node: Any, title: str) -> list[dict[str, Any]]:
    """Every schema object in an OpenAPI document with this title (inline or under components)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("title") == title:
            found.append(node)
        for key, value in node.items():
            if key.endswith(title) and isinstance(value, dict) and "properties" in value:
                found.append(value)
            found.extend(_schemas_titled(value, title))
    elif isinstance(node, list):
        for value in node:
            found.extend(_schemas_titled(value, title))
    return found


def test_the_schema_describes_the_filters_and_their_bounds(client: httpx.Client) -> None:
    filters = _schemas_titled(client.get("/schema/openapi.json").json(), "RetrievalFilters")

    assert filters, "the schema does not describe RetrievalFilters"
    for schema in filters:
        assert set(schema["properties"]) == {"source_prefix", "sources"}
        variants = schema["properties"]["sources"].get("anyOf") or schema["properties"]["sources"].get(
            "oneOf"
        )
        (sources,) = [v for v in variants if v.get("type") == "array"]
        assert sources["minItems"] == 1 and sources["maxItems"] == MAX_FILTER_SOURCES
        assert sources["items"]["minLength"] == 1
