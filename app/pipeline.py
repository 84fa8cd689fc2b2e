"""The /ask pipeline: validate → retrieve → rank and prune → build prompt → generate → post-process.

Each stage is a plain function or object from its own module; this one only runs them in order,
times them and turns the outcome into events. It knows nothing about HTTP: the handler serialises
the events as server-sent events, or folds them into one JSON answer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Annotated

import msgspec
import structlog
from msgspec import Meta

from app.errors import InvalidRequestError, ProviderError, QuestionTooLongError
from app.generation.base import ModelProvider, TextDelta, Usage
from app.postprocess import extract_citations
from app.prompting import PromptRegistry, build_prompt, document_overhead
from app.ranking import fit_to_budget, rank
from app.records import RetrievalStatus, ScoredChunk
from app.retrieval import RetrievalFilters, Retriever
from app.settings import FusionName, RankingSettings, RetrievalSettings, RetrieverMode
from app.text.tokens import ClaudeTokenEstimate, TokenCounter

__all__ = [
    "AskPipeline",
    "AskRequest",
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "PipelineEvent",
    "RetrievalEvent",
    "SourceView",
    "UsageView",
]

log = structlog.get_logger("kb.pipeline")

_SNIPPET_CHARS = 240


class AskRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /ask``. Decoded strictly (``app.http.body``): no field is coerced."""

    question: Annotated[str, Meta(min_length=1, max_length=20_000, description="The question to answer.")]
    filters: RetrievalFilters | None = None
    # The maximum is configured (retrieval.max_top_k), so validate() checks it and the OpenAPI
    # document states each app's own.
    top_k: (
        Annotated[int, Meta(ge=1, description="At most this many sources (default: retrieval.top_k).")] | None
    ) = None
    stream: Annotated[
        bool, Meta(description="Server-sent events (default), or one JSON object when false.")
    ] = True


class SourceView(msgspec.Struct, kw_only=True):
    id: int
    """The number the answer cites it by: [id]."""
    title: str
    source: str
    score: float
    snippet: str
    heading: str = ""
    page: int | None = None


class RetrievalEvent(msgspec.Struct, kw_only=True, tag="retrieval"):
    status: RetrievalStatus
    sources: list[SourceView]
    took_ms: float


class DeltaEvent(msgspec.Struct, tag="delta"):
    text: str


class UsageView(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class DoneEvent(msgspec.Struct, kw_only=True, tag="done"):
    citations: list[int]
    usage: UsageView
    model: str
    prompt_version: str
    request_id: str
    timings_ms: dict[str, float]


class ErrorEvent(msgspec.Struct, kw_only=True, tag="error"):
    code: str
    message: str
    retryable: bool


PipelineEvent = RetrievalEvent | DeltaEvent | DoneEvent | ErrorEvent


@dataclass(frozen=True, slots=True)
class ValidQuestion:
    question: str
    top_k: int
    filters: RetrievalFilters | None


class AskPipeline:
    """Runs one question through every stage. Shared by all requests; holds no request state."""

    def __init__(
        self,
        *,
        retriever: Retriever,
        question_counter: TokenCounter,
        prompts: PromptRegistry,
        prompt_version: Callable[[], str],
        provider: ModelProvider,
        retrieval: RetrievalSettings,
        ranking: RankingSettings,
        question_token_limit: int,
    ) -> None:
        self.retriever = retriever
        self.question_counter = question_counter
        self.prompts = prompts
        self.prompt_version = prompt_version
        self.provider = provider
        self.retrieval_settings = retrieval
        self.ranking_settings = ranking
        self.question_token_limit = question_token_limit
        self.context_counter = ClaudeTokenEstimate()

    # -- stage 1: validate ----------------------------------------------------------------

    def validate(self, request: AskRequest) -> ValidQuestion:
        """Refuse what cannot be answered as asked. Raises domain errors the HTTP layer maps."""
        question = " ".join(request.question.split())
        if not question:
            raise InvalidRequestError("question must not be empty or only whitespace")
        tokens = self.question_counter.count(question)
        if tokens > self.question_token_limit:
            raise QuestionTooLongError(
                f"question is {tokens} tokens long; the limit is {self.question_token_limit}. Shorten it."
            )
        top_k = request.top_k or self.retrieval_settings.top_k
        if top_k > self.retrieval_settings.max_top_k:
            raise InvalidRequestError(f"top_k must be at most {self.retrieval_settings.max_top_k}")
        filters = request.filters
        if filters and filters.source_prefix is not None and not filters.source_prefix.strip():
            raise InvalidRequestError("filters.source_prefix must not be empty")
        return ValidQuestion(question=question, top_k=top_k, filters=filters)

    # -- stages 2-6 -----------------------------------------------------------------------

    def select_context(
        self, candidates: list[ScoredChunk], top_k: int, *, context_tokens: int | None = None
    ) -> list[ScoredChunk]:
        """Rank and prune: the chunks that reach the prompt, within the context budget
        (``context_tokens``, by default ``ranking.context_tokens``). The candidates are the
        relevant ones: the retriever's floor decided that."""
        ranked = rank(
            candidates,
            top_k=top_k,
            mmr_lambda=self.ranking_settings.mmr_lambda,
            duplicate_threshold=self.ranking_settings.duplicate_threshold,
        )
        template = self.prompts.get(self.prompt_version())
        overhead = document_overhead(template, ranked, self.context_counter.count)
        return fit_to_budget(
            ranked,
            context_tokens or self.ranking_settings.context_tokens,
            self.context_counter.count,
            per_chunk_overhead=overhead,
        )

    async def run(
        self,
        valid: ValidQuestion,
        *,
        request_id: str | None = None,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
        context_tokens: int | None = None,
    ) -> AsyncGenerator[PipelineEvent, None]:
        """Events of one answer: one retrieval, deltas, then one done or one error.

        ``mode``, ``fusion`` and ``context_tokens`` default to the settings' (evaluation passes
        them per run; the service never does).
        """
        request_id = request_id or uuid.uuid4().hex
        timings: dict[str, float] = {}
        started = time.perf_counter()

        retrieval = await self.retriever.retrieve(
            valid.question, filters=valid.filters, mode=mode, fusion=fusion
        )
        timings["retrieve"] = retrieval.took_ms
        for step, ms in retrieval.timings_ms.items():
            timings[f"retrieve.{step}"] = round(ms, 2)

        mark = time.perf_counter()
        context = (
            self.select_context(retrieval.candidates, valid.top_k, context_tokens=context_tokens)
            if retrieval.status == "ok"
            else []
        )
        status: RetrievalStatus = "empty" if retrieval.status == "ok" and not context else retrieval.status
        timings["rank"] = _since(mark)

        mark = time.perf_counter()
        version = self.prompt_version()
        prompt = build_prompt(
            self.prompts.get(version), question=valid.question, status=status, context=context
        )
        timings["prompt"] = _since(mark)
        log.info(
            "retrieved",
            request_id=request_id,
            status=status,
            detail=retrieval.detail,
            candidates=len(retrieval.candidates),
            context=len(context),
            took_ms=retrieval.took_ms,
        )
        yield RetrievalEvent(status=status, sources=_sources(context), took_ms=retrieval.took_ms)

        answer: list[str] = []
        usage = UsageView(0, 0)
        mark = time.perf_counter()
        try:
            async for item in self.provider.stream(prompt):
                if isinstance(item, TextDelta):
                    if not answer:
                        timings["first_token"] = _since(started)
                    answer.append(item.text)
                    yield DeltaEvent(item.text)
                elif isinstance(item, Usage):
                    usage = UsageView(item.input_tokens, item.output_tokens)
        except ProviderError as exc:
            log.warning(
                "generation_failed",
                request_id=request_id,
                code=exc.code,
                retryable=exc.retryable,
                error=exc.message,
            )
            yield ErrorEvent(code=exc.code, message=exc.message, retryable=exc.retryable)
            return
        timings["generate"] = _since(mark)

        mark = time.perf_counter()
        citations = extract_citations("".join(answer), len(context))
        timings["postprocess"] = _since(mark)
        timings["total"] = _since(started)
        log.info(
            "answered",
            request_id=request_id,
            status=status,
            citations=citations,
            usage=msgspec.to_builtins(usage),
            total_ms=timings["total"],
        )
        yield DoneEvent(
            citations=citations,
            usage=usage,
            model=self.provider.model,
            prompt_version=prompt.version,
            request_id=request_id,
            timings_ms=timings,
        )


def _since(mark: float) -> float:
    return round((time.perf_counter() - mark) * 1000, 2)


def _sources(context: list[ScoredChunk]) -> list[SourceView]:
    views = []
    for number, chunk in enumerate(context, start=1):
        record = chunk.record
        text = " ".join(record.text.split())
        snippet = text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
        views.append(
            SourceView(
                id=number,
                title=record.title,
                source=record.source,
                score=round(chunk.score, 4),
                snippet=snippet,
                heading=record.heading,
                page=record.page,
            )
        )
    return views
