"""Calibrated relevance over the project's own docs, with the real model and the real store: a
question the docs do not cover is ``empty``, one they answer is ``ok`` with a source score that
is not 1.0 by construction."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.pipeline import SYSTEM_CALLER, AskRequest, RetrievalEvent
from app.services import Services, build_services
from ingest.runner import Ingestor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[Services]:
    base = load_settings(environ={"KB_DATA_DIR": str(tmp_path_factory.mktemp("docs-kb"))})
    settings = msgspec.structs.replace(
        base, generation=msgspec.structs.replace(base.generation, provider="extractive")
    )
    built = build_services(settings, embedder=embedder)
    store = built.store
    assert store is not None
    report = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
        [DOCS]
    )
    assert report.chunks_written > 0, report
    yield built
    asyncio.run(built.aclose())


def retrieval_of(services: Services, question: str) -> RetrievalEvent:
    async def first_event() -> RetrievalEvent:
        prepared = await services.pipeline.prepare(AskRequest(question=question), caller=SYSTEM_CALLER)
        events = services.pipeline.run(prepared)
        try:
            event = await anext(events)
        finally:
            await events.aclose()
        assert isinstance(event, RetrievalEvent)
        return event

    return asyncio.run(first_event())


@pytest.mark.xfail(
    reason="the lexical share counts the expansion terms, which come from the best dense hits "
    "themselves; judged on the question's own terms it is empty, but that costs en-kb 0.06 "
    "nDCG@10, and using them only to cap the empty decision costs 0.07 "
    "(docs/evaluation.md, 'Calibration')",
    strict=False,
)
def test_a_question_the_docs_do_not_cover_is_empty(services: Services) -> None:
    event = retrieval_of(services, "How do I configure SSO with Okta?")
    assert event.status == "empty"
    assert event.sources == []


def test_a_question_the_docs_answer_is_ok_with_a_calibrated_score(services: Services) -> None:
    event = retrieval_of(services, "How do I ingest documents?")
    assert event.status == "ok"
    assert any(source.source.endswith("ingestion.md") for source in event.sources)
    floor = services.settings.retrieval.relevance_floor
    best = max(source.score for source in event.sources)
    # The fused score of the best candidate is 1.0 for any question; relevance is not.
    assert floor <= best < 1.0
    assert all(0.0 < source.score < 1.0 for source in event.sources)
