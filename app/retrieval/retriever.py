"""Retrieve: embed the question, search dense + lexical, fuse; with a timeout and a status.

Hybrid search asks Qdrant for the dense top ``candidates`` and the BM25 top ``candidates``, each
hit with its vector, the same requests on the embedded store and on a server. When the embedding
model reads the question well, the lexical query is first expanded with terms from the best dense
hits (``app.expansion``): two round trips, dense then lexical. Otherwise (text the model cannot
read, questions naming an identifier, expansion off, single-retriever modes) both searches go in
one ``query_batch_points`` call. Fusion (``app.fusion``) then weighs the two by how well the model
reads the question and its top candidates. Rescoring the union with the sparse query
(``prefetch``) would give dense-only hits their true BM25 instead of 0; it measured no better and
tripled the embedded store's search time (docs/evaluation.md).

Retrieval never fails a request. Its outcome is a ``RetrievalResult`` whose status is ``ok``,
``empty`` (nothing came back), ``timeout`` or ``error``; on anything but ``ok`` the pipeline goes
on with an empty context and the prompt says why.

The store and the model are blocking libraries, so their calls run on one dedicated worker thread
(the embedded store is not thread-safe, and one thread also keeps a slow store from piling up
threads). A timed-out call is abandoned, not killed: its thread finishes in the background.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import msgspec
import structlog

from app.embedding import Embedder
from app.records import RetrievalStatus, ScoredChunk, SearchHit, SparseTerms
from app.retrieval.bm25 import LexicalEncoder
from app.retrieval.expansion import TermStatistics, expand_query
from app.retrieval.fusion import (
    dense_weight_for,
    dense_weight_for_length,
    fuse,
    has_identifier,
    tokens_per_word,
)
from app.settings import RetrievalSettings
from app.store import QdrantStore, RetrievalFilters, filter_for

__all__ = ["RetrievalResult", "Retriever", "RetrieverMode"]

RetrieverMode = Literal["hybrid", "dense", "lexical"]

log = structlog.get_logger("kb.retrieval")


class RetrievalResult(msgspec.Struct, kw_only=True):
    status: RetrievalStatus
    candidates: list[ScoredChunk] = msgspec.field(default_factory=list)
    took_ms: float = 0.0
    timings_ms: dict[str, float] = msgspec.field(default_factory=dict)
    detail: str | None = None
    """Why the status is not ok (for logs; not shown to end users verbatim)."""


class Retriever:
    """Hybrid retrieval over one store."""

    def __init__(
        self,
        store: QdrantStore | None,
        embedder: Embedder,
        settings: RetrievalSettings,
        *,
        lexical: LexicalEncoder | None = None,
        statistics: TermStatistics | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.lexical = lexical or LexicalEncoder()
        self.statistics = statistics or TermStatistics(
            sample_size=settings.statistics_sample, ttl_s=settings.statistics_ttl_s
        )
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-retrieval")

    async def retrieve(
        self, question: str, *, filters: RetrievalFilters | None = None, limit: int | None = None
    ) -> RetrievalResult:
        """Candidates for ``question`` within the configured timeout. Never raises for store faults."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._executor, self.search, question, filters, limit, self.settings.mode)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                candidates, timings = await asyncio.shield(call)
        except TimeoutError:
            return RetrievalResult(
                status="timeout",
                took_ms=_ms(started),
                detail=f"retrieval exceeded {self.settings.timeout_s:.1f} s",
            )
        except Exception as exc:  # any store/model failure becomes a status, by design
            return RetrievalResult(
                status="error", took_ms=_ms(started), detail=f"{type(exc).__name__}: {exc}"
            )
        status: RetrievalStatus = "ok" if candidates else "empty"
        return RetrievalResult(status=status, candidates=candidates, took_ms=_ms(started), timings_ms=timings)

    def search(
        self,
        question: str,
        filters: RetrievalFilters | None = None,
        limit: int | None = None,
        mode: RetrieverMode = "hybrid",
    ) -> tuple[list[ScoredChunk], dict[str, float]]:
        """Blocking search: fused candidates and per-step timings. Raises on store faults."""
        if self.store is None:
            raise ConnectionError("vector store is not open")
        limit = limit or self.settings.candidates
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        query_vector = self.embedder.embed([question])[0] if mode != "lexical" else None
        sparse = self.lexical.encode_query(question) if mode != "dense" else None
        query_terms = len(sparse) if sparse is not None else 0  # before any expansion
        t1 = time.perf_counter()
        timings["embed"] = (t1 - t0) * 1000
        query_filter = filter_for(filters)
        if not self.store.exists():
            timings["search"] = (time.perf_counter() - t1) * 1000
            return [], timings
        if mode == "hybrid" and self.settings.expansion_terms > 0:
            dense_hits, _ = self.store.search(
                dense=query_vector, sparse=None, limit=limit, query_filter=query_filter, with_sparse=True
            )
            t_expand = time.perf_counter()
            sparse = self._expand(question, sparse, dense_hits)
            t_lexical = time.perf_counter()
            timings["expand"] = (t_lexical - t_expand) * 1000
            _, lexical_hits = self.store.search(
                dense=None, sparse=sparse, limit=limit, query_filter=query_filter
            )
            t2 = time.perf_counter()
            timings["search"] = (t_expand - t1 + t2 - t_lexical) * 1000
        else:
            dense_hits, lexical_hits = self.store.search(
                dense=query_vector, sparse=sparse, limit=limit, query_filter=query_filter
            )
            t2 = time.perf_counter()
            timings["search"] = (t2 - t1) * 1000
        dense_weight, lexical_alone = self._weighting(question, query_terms, dense_hits, lexical_hits)
        fused = fuse(
            dense_hits,
            lexical_hits,
            query_vector,
            dense_weight=dense_weight,
            feedback_docs=self.settings.feedback_docs,
            feedback_weight=self.settings.feedback_weight,
            # Only the best ``limit`` go on: the union's tail (up to ``limit`` more) is what
            # neither retriever rated, and a long weak tail compresses the min-max relevance
            # the ranking stage's MMR works with.
            limit=limit,
        )
        timings["fuse"] = (time.perf_counter() - t2) * 1000
        # Lexical evidence alone vouches for a chunk only where the model cannot read the text,
        # the question names an identifier, or there is no dense side: on readable text a shared
        # common word ("service") is no sign of relevance, and the dense cosine is the better judge.
        trust_lexical = mode == "lexical" or lexical_alone
        return [c for c in fused if self._relevant(c, trust_lexical)], timings

    def _relevant(self, chunk: ScoredChunk, trust_lexical: bool) -> bool:
        if chunk.dense_score is not None and chunk.dense_score >= self.settings.relevance_floor:
            return True
        return trust_lexical and chunk.lexical_score is not None and chunk.lexical_score > 0.0

    def _expand(
        self, question: str, sparse: SparseTerms | None, dense_hits: list[SearchHit]
    ) -> SparseTerms | None:
        """The lexical query, expanded from the best dense hits when the model reads the question.

        Not expanded: a question of more than ``expansion_max_question_terms`` terms (it already
        names what it looks for, and feedback terms dilute it: expanding long questions cost
        pg-essays-qa a third of the answers found first), a question naming an identifier (its
        asker wants that exact token, not its neighbours' vocabulary), or one whose text and top
        dense hits the model shreds into word pieces (there the dense hits are no evidence).
        Only dense hits with a cosine of at least ``expansion_min_cosine`` lend terms: in a small
        knowledge base the ten best hits of an unanswerable question are the whole corpus. A
        store error while sampling term statistics only costs the expansion, never the search.
        """
        s = self.settings
        if sparse is None or not 0 < len(sparse) <= s.expansion_max_question_terms:
            return sparse
        if not dense_hits or has_identifier(question):
            return sparse
        texts = [question, *(hit.record.embedding_text() for hit in dense_hits[:3])]
        if tokens_per_word(texts, self.embedder.count) > s.readable_tokens_per_word:
            return sparse
        feedback = [
            hit.sparse
            for hit in dense_hits[: s.expansion_docs]
            if hit.sparse is not None and hit.score >= s.expansion_min_cosine
        ]
        if not feedback or self.store is None:
            return sparse
        try:
            frequencies = self.statistics.get(self.store)
        except Exception as exc:  # statistics are an optimisation: search on without them
            log.warning("term_statistics_unavailable", error=f"{type(exc).__name__}: {exc}")
            return sparse
        if frequencies is None:
            return sparse
        return expand_query(sparse, feedback, frequencies, terms=s.expansion_terms, weight=s.expansion_weight)

    def _weighting(
        self, question: str, query_terms: int, dense_hits: list[SearchHit], lexical_hits: list[SearchHit]
    ) -> tuple[float, bool]:
        """The fusion's dense weight for this question, and whether a lexical match alone is
        evidence of relevance (the relevance floor's question).

        * A question naming an identifier (error code, version, symbol) gets the opaque weight
          outright: exact match is what its asker wants.
        * Text the model shreds into word pieces gets less dense weight, down to the opaque
          weight. The question alone is too short to judge (a rare English word splits as much as
          a German one), so the top three candidates of each retriever are read too: that is the
          text the model would have had to understand. One tokenizer pass over ~7 short texts.
        * A long question gets less dense weight, down to ``long_question_dense_weight``
          (``dense_weight_for_length``).

        The lower of the last two wins. Only the first two make a lexical match count alone: a
        long question's common words match everywhere.
        """
        s = self.settings
        if not dense_hits or not lexical_hits:
            return s.dense_weight, False
        if has_identifier(question):
            return s.opaque_dense_weight, True
        by_length = dense_weight_for_length(
            query_terms,
            short=s.short_question_terms,
            long=s.long_question_terms,
            short_weight=s.dense_weight,
            long_weight=s.long_question_dense_weight,
        )
        if s.dense_weight == s.opaque_dense_weight:
            return by_length, False
        texts = [question, *(hit.record.embedding_text() for hit in (*dense_hits[:3], *lexical_hits[:3]))]
        by_reading = dense_weight_for(
            tokens_per_word(texts, self.embedder.count),
            readable=s.readable_tokens_per_word,
            opaque=s.opaque_tokens_per_word,
            readable_weight=s.dense_weight,
            opaque_weight=s.opaque_dense_weight,
        )
        return min(by_length, by_reading), by_reading < s.dense_weight

    async def ping(self) -> None:
        """Check the store answers, on the same worker as searches (the embedded store is not
        thread-safe). Raises what the store raises."""
        if self.store is None:
            raise ConnectionError("vector store is not open")
        await asyncio.get_running_loop().run_in_executor(self._executor, self.store.exists)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
