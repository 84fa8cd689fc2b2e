"""An evaluation run: ingest a data set into a throwaway store, ask it through the service's path.

Nothing here re-implements retrieval. ``EvalSession`` builds the service objects with
``build_services`` (the ones ``kb serve`` builds), ingests through ``Ingestor``, and asks each
question through ``Retriever.search`` (the function ``/ask`` runs under its timeout) and
``AskPipeline.select_context`` (the ranking stage ``/ask`` runs). The timeout wrapper is left out
on purpose: on a busy 2-core machine it would turn slow queries into empty results and make the
figures depend on load.

Two settings differ from the service's, both so the figures measure ranking and not plumbing:

* the store is an embedded one in a throwaway folder with its own collection, never the
  configured one (``QDRANT_URL`` is ignored), and generation is the offline extractive answerer;
* for BEIR runs the context budget is lifted so that the ``k`` best chunks are all kept:
  document-ranking metrics should not depend on how many tokens a prompt may hold. QA runs keep
  the configured budget, since answer-recall is about what would reach the prompt.

The retriever mode, the fusion strategy and that budget are passed with each call; the service's
settings objects are never rewritten, so one session evaluates several modes side by side.
``evaluate_dataset`` is the whole of ``kb eval`` below the command line.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from app.embedding import Embedder
from app.errors import KBError
from app.evaluation.datasets import (
    QA_DOCS,
    QA_QUESTIONS,
    BeirDataset,
    QAItem,
    detect_dataset_kind,
    load_beir,
    load_qa,
)
from app.evaluation.metrics import (
    LatencySummary,
    answer_contains,
    answer_in_texts,
    answer_recall_at_k,
    exact_match,
    mean,
    median,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    summarize,
    token_f1,
)
from app.pipeline import SYSTEM_CALLER, AskRequest, DeltaEvent, DoneEvent
from app.records import ScoredChunk
from app.services import Services, build_services
from app.settings import FusionName, RetrieverMode, Settings
from app.store import edge_path
from ingest.documents import LoadedDocument, Section
from ingest.report import IngestReport
from ingest.runner import IngestItem, Ingestor

__all__ = [
    "ANSWER_KS",
    "MODES",
    "STAGES",
    "EvalSession",
    "QAOutcome",
    "QAReport",
    "RankingMetrics",
    "RetrievalReport",
    "beir_items",
    "eval_settings",
    "evaluate_dataset",
]

MODES: tuple[RetrieverMode, ...] = ("dense", "lexical", "hybrid")
STAGES = ("embed", "search", "expand", "fuse", "rank", "total")
"""Per-query latency stages: model, store round trips, lexical query expansion (hybrid), fusion,
ranking (rank + budget), sum."""
ANSWER_KS = (1, 3, 5, 10)
_UNBOUNDED_CONTEXT = 200_000
_EVAL_RETRIEVAL_TIMEOUT_S = 120.0
"""Retrieval timeout of the answers asked through /ask's path: long enough never to fire."""


class RankingMetrics(msgspec.Struct, kw_only=True):
    ndcg_at_10: float = msgspec.field(name="ndcg@10")
    recall_at_10: float = msgspec.field(name="recall@10")
    mrr_at_10: float = msgspec.field(name="mrr@10")


class RetrievalReport(msgspec.Struct, kw_only=True):
    """Ranking quality of one retriever mode on a BEIR set (the metrics of the chunks /ask keeps)."""

    dataset: str
    kind: Literal["beir"] = "beir"
    mode: str
    fusion: str
    queries: int
    corpus: int
    chunks: int
    ndcg_at_10: float = msgspec.field(name="ndcg@10")
    recall_at_10: float = msgspec.field(name="recall@10")
    mrr_at_10: float = msgspec.field(name="mrr@10")
    fused: RankingMetrics
    """The same metrics on the fused, relevant candidates (after the retriever's relevance floor),
    before the ranking stage (duplicate removal, MMR): what retrieval alone achieves, comparable
    with BEIR figures."""
    latency_ms: dict[str, LatencySummary]
    per_query: dict[str, float] = msgspec.field(default_factory=dict)
    """query id → nDCG@10 after ranking, for paired comparisons between modes."""


class QAOutcome(msgspec.Struct, kw_only=True):
    """One question of a QA run: what reached the prompt and what the answerer made of it."""

    reached: bool
    """Whether a gold answer is in the chunks /ask puts in the prompt (default ``top_k``)."""
    gold_in_answer: bool
    f1: float
    words: int
    answer: str


class QAReport(msgspec.Struct, kw_only=True):
    """Answer quality of one retriever mode on a QA set."""

    dataset: str
    kind: Literal["qa"] = "qa"
    mode: str
    fusion: str
    queries: int
    chunks: int
    answer_recall: dict[str, float]
    """``"@k"`` → share of questions with a gold answer in the top-k chunks of the prompt."""
    provider: str
    exact_match: float
    token_f1: float
    gold_in_answer: float
    """Share of questions whose gold answer (SQuAD-normalised, whole words) is in the answer text."""
    reached_context: int
    """Questions whose gold answer is in the chunks /ask puts in the prompt (default ``top_k``)."""
    gold_in_answer_reached: float
    """``gold_in_answer`` over those questions only: what the answerer makes of a good context."""
    median_answer_words: float
    latency_ms: dict[str, LatencySummary]
    """Retrieval and ranking, per stage."""
    answer_ms: LatencySummary | None = None
    """Time the provider took per answer (the pipeline's ``generate`` stage), in milliseconds."""
    per_query: dict[str, QAOutcome] = msgspec.field(default_factory=dict)
    """question id → its outcome and answer text (the answers are deterministic: two runs over
    the same store give the same texts)."""


def eval_settings(base: Settings, data_dir: Path, name: str) -> Settings:
    """``base`` pointed at a throwaway embedded store, with the offline answerer."""
    collection = "eval-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:59] or "set")
    return msgspec.structs.replace(
        base,
        data_dir=str(data_dir),
        store=msgspec.structs.replace(base.store, collection=collection),
        generation=msgspec.structs.replace(base.generation, provider="extractive"),
        # Never evaluate against (or write into) a shared server or shared state by accident.
        secrets=msgspec.structs.replace(base.secrets, qdrant_url=None, qdrant_api_key=None, redis_url=None),
        ingest=msgspec.structs.replace(base.ingest, tenant=SYSTEM_CALLER.tenant),
        # Every question is answered afresh: a kept store (--keep-data) must not replay answers.
        answers=msgspec.structs.replace(base.answers, answer_cache="off"),
        # The answers are asked through /ask's own path, retrieval timeout included; on a busy
        # machine that would turn slow searches into "timeout" answers and the figures into a
        # measure of load (the retrieval-only figures skip the timeout for the same reason).
        retrieval=msgspec.structs.replace(
            base.retrieval, timeout_s=max(base.retrieval.timeout_s, _EVAL_RETRIEVAL_TIMEOUT_S)
        ),
    )


def beir_items(dataset: BeirDataset) -> list[IngestItem]:
    """One document per corpus entry; its source is the corpus id, its title the entry's title."""

    def item(entry_id: str, title: str, text: str) -> IngestItem:
        document = LoadedDocument(title=title, format="text", sections=(Section(text=text),))
        return IngestItem(source=entry_id, content=f"{title}\n{text}".encode(), load=lambda: document)

    return [item(e.id, e.title, e.text) for e in dataset.corpus]


class EvalSession:
    """The service's objects over one throwaway store; ingest once, evaluate several modes."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.services: Services = build_services(settings, embedder=embedder)
        if self.services.store is None:
            raise RuntimeError(f"the evaluation store at {edge_path(settings)} could not be opened")
        self.chunks = 0

    def __enter__(self) -> EvalSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        asyncio.run(self.services.aclose())

    # -- ingestion ------------------------------------------------------------------------

    def _ingestor(self) -> Ingestor:
        store = self.services.store
        assert store is not None
        return Ingestor(
            store, self.services.embedder, chunking=self.settings.chunking, ingest=self.settings.ingest
        )

    def ingest_beir(self, dataset: BeirDataset) -> IngestReport:
        report = self._ingestor().ingest_items(beir_items(dataset))
        self.chunks = self.services.store.count() if self.services.store else 0
        return report

    def ingest_folder(self, docs: Path) -> IngestReport:
        """Ingest a QA set's documents (``DIR/docs`` of the set, or wherever ``--docs`` says)."""
        report = self._ingestor().ingest_paths([docs])
        self.chunks = self.services.store.count() if self.services.store else 0
        return report

    # -- one question ---------------------------------------------------------------------

    def ask(
        self,
        question: str,
        mode: RetrieverMode,
        top_k: int,
        *,
        fusion: FusionName | None = None,
        context_tokens: int | None = None,
    ) -> tuple[list[ScoredChunk], list[ScoredChunk], dict[str, float]]:
        """Fused candidates, the chunks that would reach the prompt, and per-stage milliseconds."""
        candidates, timings = self.services.retriever.search(question, mode=mode, fusion=fusion)
        mark = time.perf_counter()
        template = self.services.prompts.answer(self.services.settings.prompts.version)
        context = self.services.pipeline.select_context(
            candidates, top_k, template=template, context_tokens=context_tokens, question=question
        )
        timings["rank"] = (time.perf_counter() - mark) * 1000
        timings.setdefault("expand", 0.0)  # modes that do not expand report it as free
        timings["total"] = sum(timings.get(stage, 0.0) for stage in STAGES[:-1])
        return candidates, context, timings

    def _fusion(self, fusion: FusionName | None) -> FusionName:
        return fusion or self.settings.retrieval.fusion

    # -- BEIR -----------------------------------------------------------------------------

    def evaluate_beir(
        self, dataset: BeirDataset, mode: RetrieverMode, *, fusion: FusionName | None = None, k: int = 10
    ) -> RetrievalReport:
        """nDCG, recall and MRR at ``k`` over distinct documents, plus per-stage latency."""
        final: list[tuple[float, float, float]] = []
        fused: list[tuple[float, float, float]] = []
        timings: list[dict[str, float]] = []
        for query in dataset.queries:
            candidates, context, took = self.ask(
                query.text, mode, k, fusion=fusion, context_tokens=_UNBOUNDED_CONTEXT
            )
            judged = dataset.qrels[query.id]
            # ChunkRecord.source is the corpus id; metrics drop repeats of one document.
            final.append(_scores([chunk.record.source for chunk in context], judged, k))
            fused.append(_scores([chunk.record.source for chunk in candidates], judged, k))
            timings.append(took)
        kept = _means(final)
        return RetrievalReport(
            dataset=dataset.name,
            mode=mode,
            fusion=self._fusion(fusion),
            queries=len(dataset.queries),
            corpus=len(dataset.corpus),
            chunks=self.chunks,
            ndcg_at_10=kept.ndcg_at_10,
            recall_at_10=kept.recall_at_10,
            mrr_at_10=kept.mrr_at_10,
            fused=_means(fused),
            latency_ms=_latency(timings),
            per_query={q.id: round(row[0], 4) for q, row in zip(dataset.queries, final, strict=True)},
        )

    # -- QA -------------------------------------------------------------------------------

    def evaluate_qa(
        self, name: str, items: Sequence[QAItem], mode: RetrieverMode, *, fusion: FusionName | None = None
    ) -> QAReport:
        """Answer-recall@k of the prompt's chunks, and the offline answerer's answers against the
        golds: EM / F1 (SQuAD), the gold span in the answer (over all questions and over those whose
        answer reached the prompt), answer length and time."""
        top = max(ANSWER_KS)
        default_top_k = self.settings.retrieval.top_k
        template = self.services.prompts.answer(self.services.settings.prompts.version)
        recall: dict[int, list[float]] = {k: [] for k in ANSWER_KS}
        reached: list[bool] = []
        timings: list[dict[str, float]] = []
        for item in items:
            candidates, context, took = self.ask(item.question, mode, top, fusion=fusion)
            texts = [chunk.record.text for chunk in context]
            for k in ANSWER_KS:
                recall[k].append(answer_recall_at_k(item.answers, texts, k))
            # What /ask itself puts in the prompt: the default top_k, not the widest k above.
            prompt_chunks = self.services.pipeline.select_context(
                candidates, default_top_k, template=template, question=item.question
            )
            reached.append(answer_in_texts(item.answers, [chunk.record.text for chunk in prompt_chunks]))
            timings.append(took)
        runs = asyncio.run(self._answers([item.question for item in items], mode, fusion))
        answers = [text for text, _ in runs]
        contains = [answer_contains(a, i.answers) for a, i in zip(answers, items, strict=True)]
        f1 = [token_f1(a, i.answers) for a, i in zip(answers, items, strict=True)]
        contains_reached = [c for c, r in zip(contains, reached, strict=True) if r]
        generate = [ms for _, ms in runs if ms is not None]
        return QAReport(
            dataset=name,
            mode=mode,
            fusion=self._fusion(fusion),
            queries=len(items),
            chunks=self.chunks,
            answer_recall={f"@{k}": round(mean(v), 4) for k, v in recall.items()},
            provider=self.services.provider.name,
            exact_match=round(
                mean([exact_match(a, i.answers) for a, i in zip(answers, items, strict=True)]), 4
            ),
            token_f1=round(mean(f1), 4),
            gold_in_answer=round(mean(contains), 4),
            reached_context=len(contains_reached),
            gold_in_answer_reached=round(mean(contains_reached), 4),
            median_answer_words=median([float(len(a.split())) for a in answers]),
            latency_ms=_latency(timings),
            answer_ms=_summary(generate) if generate else None,
            per_query={
                item.id: QAOutcome(
                    reached=r, gold_in_answer=bool(c), f1=round(f, 4), words=len(a.split()), answer=a
                )
                for item, r, c, f, a in zip(items, reached, contains, f1, answers, strict=True)
            },
        )

    async def _answers(
        self, questions: Sequence[str], mode: RetrieverMode, fusion: FusionName | None
    ) -> list[tuple[str, float | None]]:
        """The full /ask pipeline's answer text for each question (default top_k and budget),
        with the milliseconds the provider took (None when there was no answer)."""
        pipeline = self.services.pipeline
        answers: list[tuple[str, float | None]] = []
        for question in questions:
            try:
                prepared = await pipeline.prepare(
                    AskRequest(question=question, stream=False), caller=SYSTEM_CALLER
                )
            except KBError:
                answers.append(("", None))  # /ask would refuse it (too long): no answer, scored as such
                continue
            parts: list[str] = []
            generate: float | None = None
            async for event in pipeline.run(prepared, mode=mode, fusion=fusion):
                if isinstance(event, DeltaEvent):
                    parts.append(event.text)
                elif isinstance(event, DoneEvent):
                    generate = event.timings_ms.get("generate")
            answers.append(("".join(parts), generate))
        return answers


def evaluate_dataset(
    dataset_dir: Path,
    settings: Settings,
    *,
    modes: Sequence[RetrieverMode],
    fusion: FusionName | None = None,
    limit: int | None = None,
    docs_dir: Path | None = None,
    embedder: Embedder | None = None,
    say: Callable[[str], None] = lambda _message: None,
) -> list[RetrievalReport] | list[QAReport]:
    """``kb eval``: ingest the set in ``dataset_dir`` into ``settings``' store (see
    ``eval_settings``) once, then evaluate each of ``modes`` with ``fusion``.

    A BEIR set (``corpus.jsonl`` ...) is judged by document ranking, a QA set (``questions.jsonl``
    and its documents in ``docs_dir``, by default ``dataset_dir/docs``) by answer recall; only the
    first ``limit`` queries are asked when given. ``embedder`` reuses a loaded model (the
    session's own is loaded otherwise); ``say`` hears progress. Raises ``DatasetError`` for a
    folder that is no data set.
    """
    qa = docs_dir is not None and (dataset_dir / QA_QUESTIONS).is_file()
    kind = "qa" if qa else detect_dataset_kind(dataset_dir)
    with EvalSession(settings, embedder=embedder) as session:
        if kind == "beir":
            dataset = load_beir(dataset_dir)
            if limit:
                dataset.queries = dataset.queries[:limit]
                dataset.qrels = {q.id: dataset.qrels[q.id] for q in dataset.queries}
            say(f"ingesting {len(dataset.corpus)} passages of {dataset.name} ...")
            ingest = session.ingest_beir(dataset)
            say(f"ingested: {session.chunks} chunks in {ingest.seconds:.0f} s")
            return [session.evaluate_beir(dataset, mode, fusion=fusion) for mode in modes]
        docs = docs_dir or dataset_dir / QA_DOCS
        items = load_qa(dataset_dir / QA_QUESTIONS)[:limit]
        say(f"ingesting the documents in {docs} ...")
        ingest = session.ingest_folder(docs)
        say(f"ingested: {session.chunks} chunks in {ingest.seconds:.0f} s")
        name = dataset_dir.resolve().name
        return [session.evaluate_qa(name, items, mode, fusion=fusion) for mode in modes]


def _scores(ranked: list[str], judged: dict[str, int], k: int) -> tuple[float, float, float]:
    return ndcg_at_k(ranked, judged, k), recall_at_k(ranked, judged, k), mrr_at_k(ranked, judged, k)


def _means(rows: Sequence[tuple[float, float, float]]) -> RankingMetrics:
    ndcg, recall, mrr = (round(mean([row[i] for row in rows]), 4) for i in range(3))
    return RankingMetrics(ndcg_at_10=ndcg, recall_at_10=recall, mrr_at_10=mrr)


def _latency(timings: Sequence[dict[str, float]]) -> dict[str, LatencySummary]:
    out: dict[str, LatencySummary] = {}
    for stage in STAGES:
        values = [t[stage] for t in timings if stage in t]
        if values:
            out[stage] = _summary(values)
    return out


def _summary(values: Sequence[float]) -> LatencySummary:
    summary = summarize(values)
    return LatencySummary(
        p50=round(summary.p50, 3), p95=round(summary.p95, 3), mean=round(summary.mean, 3), n=summary.n
    )
