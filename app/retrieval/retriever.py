"""Retrieve: embed the question, search dense + lexical, fuse; with a timeout and a status.

Hybrid search asks Qdrant for the dense top ``candidates`` and the BM25 top ``candidates``, each
hit with its vector, the same requests on the embedded store and on a server. With lexical
expansion on (hybrid mode, ``expansion_terms`` > 0) that is two round trips, dense then lexical:
the query policy (``app.retrieval.policy``) reads the question with its best dense hits, once,
and decides the dense weight, whether a lexical match counts alone, and whether the BM25 query is
expanded with terms of those hits (``app.retrieval.expansion``). Otherwise both searches go in one
``query_batch_points`` call and the policy reads the same texts after it. Fusion
(``app.retrieval.fusion``) then combines the two with the policy's weight, and the relevance floor
(``is_relevant``, the only one) drops what is no evidence. Rescoring the union with the sparse
query (``prefetch``) would give dense-only hits their true BM25 instead of 0; it measured no
better and tripled the embedded store's search time (docs/evaluation.md).

Retrieval never fails a request. Its outcome is a ``RetrievalResult`` whose status is ``ok``,
``empty`` (nothing relevant came back), ``timeout`` or ``error``; on anything but ``ok`` the
pipeline goes on with an empty context and the prompt says why.

The store and the model are blocking libraries, so their calls run on one dedicated worker thread
(the embedded store is not thread-safe, and one thread also keeps a slow store from piling up
threads). A timed-out call is abandoned, not killed: its thread finishes in the background, and
if it fails then, one structured warning says so.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import structlog

from app.embedding import Embedder
from app.records import RetrievalStatus, ScoredChunk, SearchHit, SparseTerms
from app.retrieval.bm25 import LexicalEncoder
from app.retrieval.expansion import TermStatistics, expand_query
from app.retrieval.fusion import fuse, fusion_strategy
from app.retrieval.policy import QueryProfile, is_relevant, profile_query
from app.settings import FusionName, RetrievalSettings, RetrieverMode
from app.store import RetrievalFilters, SearchStore, filter_for

__all__ = ["RetrievalResult", "Retriever", "RetrieverMode"]

log = structlog.get_logger("kb.retrieval")

_READ_HITS = 3
"""Best dense hits whose texts the policy reads with the question to judge readability."""

_Searched = tuple[list[ScoredChunk], dict[str, float]]


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
        store: SearchStore | None,
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
        self,
        question: str,
        *,
        filters: RetrievalFilters | None = None,
        limit: int | None = None,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
    ) -> RetrievalResult:
        """Candidates for ``question`` within the configured timeout. Never raises for store faults.

        ``mode`` and ``fusion`` default to the settings' (``retrieval.mode``, ``retrieval.fusion``).
        """
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._executor, functools.partial(self.search, question, filters, limit, mode=mode, fusion=fusion)
        )
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
        finally:
            if not call.done():
                # Abandoned (timeout, or the request was cancelled): the thread runs on, and
                # nobody awaits its outcome. Collect it, or asyncio prints "Future exception was
                # never retrieved" with a traceback when the store call fails later.
                call.add_done_callback(_report_abandoned)
        status: RetrievalStatus = "ok" if candidates else "empty"
        return RetrievalResult(status=status, candidates=candidates, took_ms=_ms(started), timings_ms=timings)

    def search(
        self,
        question: str,
        filters: RetrievalFilters | None = None,
        limit: int | None = None,
        *,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
    ) -> _Searched:
        """Blocking search: relevant fused candidates and per-step timings. Raises on store faults.

        ``mode`` and ``fusion`` default to the settings' (``retrieval.mode``, ``retrieval.fusion``).
        """
        if self.store is None:
            raise ConnectionError("vector store is not open")
        s = self.settings
        mode = mode or s.mode
        strategy = fusion_strategy(fusion or s.fusion, s)
        limit = limit or s.candidates
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        query_vector = self.embedder.embed([question])[0] if mode != "lexical" else None
        sparse = self.lexical.encode_query(question) if mode != "dense" else None
        index_terms = len(sparse) if sparse is not None else 0  # before any expansion
        t1 = time.perf_counter()
        timings["embed"] = (t1 - t0) * 1000
        query_filter = filter_for(filters)
        if not self.store.exists():
            timings["search"] = (time.perf_counter() - t1) * 1000
            return [], timings
        if mode == "hybrid" and s.expansion_terms > 0:
            dense_hits, _ = self.store.search(
                dense=query_vector, sparse=None, limit=limit, query_filter=query_filter, with_sparse=True
            )
            t_expand = time.perf_counter()
            profile = self._profile(question, index_terms, dense_hits, mode)
            if profile.expand and sparse is not None:
                sparse = self.expand(sparse, dense_hits)
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
            profile = self._profile(question, index_terms, dense_hits, mode)
        fused = fuse(
            dense_hits,
            lexical_hits,
            query_vector,
            strategy=strategy,
            dense_weight=profile.dense_weight,
            # Only the best ``limit`` go on: the union's tail (up to ``limit`` more) is what
            # neither retriever rated, and a long weak tail compresses the min-max relevance
            # the ranking stage's MMR works with.
            limit=limit,
        )
        timings["fuse"] = (time.perf_counter() - t2) * 1000
        floor = s.relevance_floor
        return [c for c in fused if is_relevant(c, floor=floor, lexical_alone=profile.lexical_alone)], timings

    def _profile(
        self, question: str, index_terms: int, dense_hits: list[SearchHit], mode: RetrieverMode
    ) -> QueryProfile:
        texts = [hit.record.embedding_text() for hit in dense_hits[:_READ_HITS]] if mode == "hybrid" else []
        return profile_query(
            question,
            index_terms=index_terms,
            texts=texts,
            count=self.embedder.count,
            settings=self.settings,
            mode=mode,
        )

    def expand(self, query: SparseTerms, dense_hits: list[SearchHit]) -> SparseTerms:
        """``query`` with the terms that weigh most in the confident dense hits added.

        Whether a question is expanded at all is the query policy's decision (``QueryProfile``);
        this is the mechanics. Only dense hits with a cosine of at least ``expansion_min_cosine``
        lend terms: in a small knowledge base the ten best hits of an unanswerable question are
        the whole corpus. A store error while sampling term statistics only costs the expansion,
        never the search.
        """
        s = self.settings
        feedback = [
            hit.sparse
            for hit in dense_hits[: s.expansion_docs]
            if hit.sparse is not None and hit.score >= s.expansion_min_cosine
        ]
        if not feedback or self.store is None:
            return query
        try:
            frequencies = self.statistics.get(self.store)
        except Exception as exc:  # statistics are an optimisation: search on without them
            log.warning("term_statistics_unavailable", error=f"{type(exc).__name__}: {exc}")
            return query
        if frequencies is None:
            return query
        return expand_query(query, feedback, frequencies, terms=s.expansion_terms, weight=s.expansion_weight)

    async def ping(self) -> None:
        """Check the store answers, on the same worker as searches (the embedded store is not
        thread-safe). Raises what the store raises."""
        if self.store is None:
            raise ConnectionError("vector store is not open")
        await asyncio.get_running_loop().run_in_executor(self._executor, self.store.exists)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _report_abandoned(call: asyncio.Future[_Searched]) -> None:
    """Collect the outcome of a store call nobody waits for any more; log its failure once."""
    if call.cancelled():
        return
    exc = call.exception()
    if exc is not None:
        log.warning("abandoned_retrieval_failed", error=f"{type(exc).__name__}: {exc}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
