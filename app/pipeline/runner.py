"""The /ask pipeline: validate → retrieve → rank and prune → build prompt → generate → post-process.

Each stage is a plain function or object from its own module; this one only runs them in order,
times them and turns the outcome into events. It knows nothing about HTTP: the handler calls
``prepare`` (every refusal happens there, before a byte is streamed), then streams ``run``.

Per-request collaborators (which prompt version, the conversation, the answer cache, the token
budget) are Protocols from ``app.pipeline.hooks``; their null versions make a pipeline that
answers every question alone, with one prompt, uncached and unlimited.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import msgspec
import structlog

from app.errors import InvalidRequestError, ProviderError, QuestionTooLongError
from app.generation.base import ModelProvider, TextDelta, Usage
from app.observability import CallerView, RequestTrace, StageClock, TraceError, chunk_scores
from app.pipeline.events import (
    AskRequest,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    PipelineEvent,
    RetrievalEvent,
    SourceView,
    UsageView,
)
from app.pipeline.hooks import (
    UNLIMITED,
    AnswerCache,
    AnswerKey,
    CachedAnswer,
    Conversations,
    NoAnswerCache,
    NoConversations,
    NoObserver,
    PromptChoice,
    PromptSelector,
    RequestObserver,
    TokenBudget,
    Turn,
)
from app.pipeline.remembered import Remembered
from app.postprocess import extract_citations
from app.prompting import Prompt, PromptTemplate, build_prompt, document_overhead
from app.ranking import complete_sections, fit_to_budget, index_terms, rank, text_words
from app.records import DEFAULT_TENANT, Caller, RetrievalStatus, ScoredChunk
from app.retrieval import RetrievalFilters, Retriever, relevance_of
from app.settings import FusionName, RankingSettings, RetrievalSettings, RetrieverMode
from app.text.tokens import ClaudeTokenEstimate, TokenCounter

__all__ = ["SYSTEM_CALLER", "AskPipeline", "PreparedQuestion", "ValidQuestion"]

log = structlog.get_logger("kb.pipeline")

_SNIPPET_CHARS = 240
# A cached answer is replayed in pieces of about this many characters, so a client renders it
# the way it renders a generated one.
_REPLAY_CHARS = 64

SYSTEM_CALLER = Caller(key_id=None, name="system", tenant=DEFAULT_TENANT, role="admin")
"""The caller of runs that no client makes (``kb eval``)."""


@dataclass(frozen=True, slots=True)
class ValidQuestion:
    """A request that passed the synchronous checks (``AskPipeline.validate``)."""

    question: str
    top_k: int
    filters: RetrievalFilters | None


@dataclass(frozen=True, slots=True)
class PreparedQuestion:
    """Everything decided before the first event: who asks what, searched as what, with which prompt."""

    question: str
    """As asked (whitespace-normalised)."""
    search_question: str
    """What retrieval searches: the follow-up made standalone, or ``question``."""
    top_k: int
    filters: RetrievalFilters | None
    caller: Caller
    prompt: PromptChoice
    conversation_id: str
    """The conversation this turn belongs to (a new id for a first question)."""
    clock: StageClock | None = None
    """When handling began, and how long validating and preparing took (for the request's trace)."""


class AskPipeline:
    """Runs one question through every stage. Shared by all requests; holds no request state."""

    def __init__(
        self,
        *,
        retriever: Retriever,
        question_counter: TokenCounter,
        prompts: PromptSelector,
        provider: ModelProvider,
        retrieval: RetrievalSettings,
        ranking: RankingSettings,
        question_token_limit: int,
        max_output_tokens: int,
        conversations: Conversations | None = None,
        answer_cache: AnswerCache | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.retriever = retriever
        self.question_counter = question_counter
        self.prompts = prompts
        self.provider = provider
        self.retrieval_settings = retrieval
        self.ranking_settings = ranking
        self.question_token_limit = question_token_limit
        self.max_output_tokens = max_output_tokens
        self.conversations = conversations or NoConversations()
        self.answer_cache = answer_cache or NoAnswerCache()
        self.observer = observer or NoObserver()
        self.context_counter = ClaudeTokenEstimate()
        # Chunk texts repeat across questions; prompts and answers do not (they use the above).
        self.chunk_counts = Remembered(self.context_counter.count)
        self.chunk_terms = Remembered(index_terms)
        self.chunk_words = Remembered(text_words)

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

    async def prepare(
        self, request: AskRequest, *, caller: Caller, prompt_override: str | None = None
    ) -> PreparedQuestion:
        """Validate, choose the prompt version, make a follow-up standalone.

        Raises domain errors (invalid request, unknown conversation, unknown prompt version) so
        that the HTTP layer refuses with a status code before streaming anything.
        """
        clock = StageClock()
        valid = self.validate(request)
        mark = time.perf_counter()
        clock.stage("validate", clock.origin, mark)
        prompt = await self.prompts.select(caller, override=prompt_override)
        search_question = valid.question
        conversation_id = request.conversation_id
        if conversation_id is None:
            conversation_id = uuid.uuid4().hex
        else:
            search_question = await self.conversations.standalone(conversation_id, caller, valid.question)
        clock.stage("prepare", mark)
        return PreparedQuestion(
            question=valid.question,
            search_question=" ".join(search_question.split()) or valid.question,
            top_k=valid.top_k,
            filters=valid.filters,
            caller=caller,
            prompt=prompt,
            conversation_id=conversation_id,
            clock=clock,
        )

    # -- stages 2-6 -----------------------------------------------------------------------

    def select_context(
        self,
        candidates: list[ScoredChunk],
        top_k: int,
        *,
        template: PromptTemplate,
        context_tokens: int | None = None,
        question: str | None = None,
    ) -> list[ScoredChunk]:
        """Rank and prune: the chunks that reach the prompt, within the context budget
        (``context_tokens``, by default ``ranking.context_tokens``). The candidates are the
        relevant ones: the retriever's floor decided that. With the ``question`` searched, a
        section whose heading names its rarest term is brought in whole (``complete_sections``)."""
        ranked = rank(
            candidates,
            top_k=top_k,
            mmr_lambda=self.ranking_settings.mmr_lambda,
            duplicate_threshold=self.ranking_settings.duplicate_threshold,
            words_of=self.chunk_words,
        )
        if question is not None:
            ranked = complete_sections(
                ranked,
                candidates,
                question,
                top_k=top_k,
                terms_of=self.chunk_terms,
                words_of=self.chunk_words,
            ).chunks
        overhead = document_overhead(template, ranked, self.chunk_counts)
        return fit_to_budget(
            ranked,
            context_tokens or self.ranking_settings.context_tokens,
            self.chunk_counts,
            per_chunk_overhead=overhead,
        )

    def answer_key(self, prepared: PreparedQuestion) -> AnswerKey:
        return AnswerKey(
            question=prepared.search_question.casefold(),
            filters=prepared.filters,
            top_k=prepared.top_k,
            tenant=prepared.caller.tenant,
            prompt=prepared.prompt.ref,
            model=self.provider.model,
        )

    async def run(
        self,
        prepared: PreparedQuestion,
        *,
        request_id: str | None = None,
        budget: TokenBudget = UNLIMITED,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
        context_tokens: int | None = None,
    ) -> AsyncGenerator[PipelineEvent, None]:
        """Events of one answer: one retrieval, deltas, then one done or one error.

        ``mode``, ``fusion`` and ``context_tokens`` default to the settings' (evaluation passes
        them per run, and is never served from the cache; the service never passes them).
        However the run ends (done, error, cached, the client gone), the observer is told once.
        """
        request_id = request_id or uuid.uuid4().hex
        clock = prepared.clock.fork() if prepared.clock is not None else StageClock()
        trace = RequestTrace(
            request_id=request_id,
            started_ns=clock.started_ns,
            evaluation=mode is not None or fusion is not None or context_tokens is not None,
            caller=CallerView.of(prepared.caller),
            conversation_id=prepared.conversation_id,
            question=prepared.question,
            searched=prepared.search_question,
            prompt=prepared.prompt.ref,
            prompt_reason=prepared.prompt.reason,
            provider=self.provider.name,
            model=self.provider.model,
            max_output_tokens=self.max_output_tokens,
            stages=clock.stages,
        )
        events = self._answer(
            prepared,
            trace,
            clock,
            request_id=request_id,
            budget=budget,
            mode=mode,
            fusion=fusion,
            context_tokens=context_tokens,
        )
        try:
            async for event in events:
                _follow(trace, event)
                yield event
        except Exception as exc:
            trace.outcome = "error"
            trace.error = TraceError(code="internal_error", message=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            await events.aclose()
            if trace.outcome == "cancelled":
                trace.finish_reason = "cancelled"
            self.observer.finished(trace)

    async def _answer(
        self,
        prepared: PreparedQuestion,
        trace: RequestTrace,
        clock: StageClock,
        *,
        request_id: str | None = None,
        budget: TokenBudget = UNLIMITED,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
        context_tokens: int | None = None,
    ) -> AsyncGenerator[PipelineEvent, None]:
        request_id = request_id or uuid.uuid4().hex
        started = time.perf_counter()
        evaluating = mode is not None or fusion is not None or context_tokens is not None
        key = self.answer_key(prepared)
        mark = time.perf_counter()
        if not evaluating and (cached := await self.answer_cache.lookup(key)) is not None:
            clock.stage("cache", mark)
            async for event in self._replay(prepared, cached, request_id, started):
                yield event
            return
        clock.stage("cache", mark)

        timings: dict[str, float] = {}
        trace.timings_ms = timings
        mark = time.perf_counter()
        retrieval = await self.retriever.retrieve(
            prepared.search_question,
            filters=prepared.filters,
            mode=mode,
            fusion=fusion,
            tenant=prepared.caller.tenant,
        )
        clock.stage("retrieve", mark)
        timings["retrieve"] = retrieval.took_ms
        for step, ms in retrieval.timings_ms.items():
            timings[f"retrieve.{step}"] = round(ms, 2)

        mark = time.perf_counter()
        template = prepared.prompt.template
        context = (
            self.select_context(
                retrieval.candidates,
                prepared.top_k,
                template=template,
                context_tokens=context_tokens,
                question=prepared.search_question,
            )
            if retrieval.status == "ok"
            else []
        )
        status: RetrievalStatus = "empty" if retrieval.status == "ok" and not context else retrieval.status
        timings["rank"] = clock.stage("rank", mark)
        trace.retrieval_status, trace.retriever_status = status, retrieval.status
        trace.retrieval_detail, trace.retrieval_ms = retrieval.detail, retrieval.took_ms
        retrieval_event = RetrievalEvent(
            status=status,
            sources=_sources(context),
            took_ms=retrieval.took_ms,
            question=prepared.search_question,
        )
        # The client gets its sources first; the trace's scores, the log line and the prompt,
        # which the event does not need, follow (even when the client leaves at this event).
        try:
            yield retrieval_event
        finally:
            trace.candidates = chunk_scores(retrieval.candidates)
            trace.context = chunk_scores(context, numbered=True)
            log.info(
                "retrieved",
                request_id=request_id,
                status=status,
                detail=retrieval.detail,
                candidates=len(retrieval.candidates),
                context=len(context),
                took_ms=retrieval.took_ms,
                prompt=prepared.prompt.ref,
            )

        mark = time.perf_counter()
        # The standalone question: the model sees no earlier turns, and the cache keys by it.
        prompt = build_prompt(template, question=prepared.search_question, status=status, context=context)
        timings["prompt"] = clock.stage("prompt", mark)
        answer: list[str] = []
        usage = UsageView(0, 0)
        input_estimate = _prompt_tokens(prompt, self.context_counter)
        mark = time.perf_counter()
        granted = await budget.reserve(input_tokens=input_estimate, max_output_tokens=self.max_output_tokens)
        clock.stage("budget", mark)
        trace.tokens_granted = granted
        exhausted = granted <= 0
        # Counting the streamed text costs something; only a partial grant needs it.
        watch_budget = granted < self.max_output_tokens
        stream = self.provider.stream(prompt)
        mark = time.perf_counter()
        try:
            if not exhausted:
                async for item in stream:
                    if isinstance(item, TextDelta):
                        if not answer:
                            timings["first_token"] = _since(started)
                            trace.first_token_ms = clock.offset_ms(time.perf_counter())
                        answer.append(item.text)
                        yield DeltaEvent(item.text)
                        if watch_budget and self.context_counter.count("".join(answer)) >= granted:
                            exhausted = True
                            break
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
        finally:
            clock.stage("generate", mark)
            # Stopped early (budget cut, client gone): the provider releases its upstream call.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            # The real usage when the model reported it, else what was streamed (estimated).
            trace.answer = "".join(answer)
            text_tokens = self.context_counter.count(trace.answer)
            trace.input_tokens = usage.input_tokens or (input_estimate if answer else 0)
            trace.output_tokens = usage.output_tokens or text_tokens
            await budget.settle(input_tokens=trace.input_tokens, output_tokens=trace.output_tokens)
        if exhausted:
            log.info("token_budget_exhausted", request_id=request_id, granted=granted)
            yield ErrorEvent(
                code="token_budget_exhausted",
                message="the token budget of this key or tenant is spent; the answer was cut off here",
                retryable=True,
            )
            return
        timings["generate"] = _since(mark)

        mark = time.perf_counter()
        text = "".join(answer)
        citations = extract_citations(text, len(context))
        timings["postprocess"] = clock.stage("postprocess", mark)
        timings["total"] = _since(started)
        log.info(
            "answered",
            request_id=request_id,
            status=status,
            citations=citations,
            usage=msgspec.to_builtins(usage),
            total_ms=timings["total"],
            prompt=prepared.prompt.ref,
        )
        mark = time.perf_counter()
        await self._record_turn(prepared, retrieval_event, text, request_id)
        if not evaluating and status == "ok":
            # Only answers grounded in documents are kept: an empty or failed retrieval may
            # well succeed on the next try.
            await self.answer_cache.store(
                key,
                CachedAnswer(
                    retrieval=msgspec.Raw(msgspec.json.encode(retrieval_event)),
                    answer=text,
                    citations=citations,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    model=self.provider.model,
                ),
            )
        clock.stage("store", mark)
        yield DoneEvent(
            citations=citations,
            usage=usage,
            model=self.provider.model,
            prompt_version=prepared.prompt.ref,
            request_id=request_id,
            timings_ms=timings,
            conversation_id=prepared.conversation_id,
        )

    async def _replay(
        self, prepared: PreparedQuestion, cached: CachedAnswer, request_id: str, started: float
    ) -> AsyncIterator[PipelineEvent]:
        """A cached answer as the same event protocol, ``done`` saying ``cached``."""
        retrieval_event = msgspec.json.decode(cached.retrieval, type=RetrievalEvent)
        yield msgspec.structs.replace(retrieval_event, took_ms=0.0, question=prepared.search_question)
        for start in range(0, len(cached.answer), _REPLAY_CHARS):
            yield DeltaEvent(cached.answer[start : start + _REPLAY_CHARS])
        await self._record_turn(prepared, retrieval_event, cached.answer, request_id)
        log.info("answered", request_id=request_id, cached=True, prompt=prepared.prompt.ref)
        yield DoneEvent(
            citations=cached.citations,
            usage=UsageView(cached.input_tokens, cached.output_tokens),
            model=cached.model,
            prompt_version=prepared.prompt.ref,
            request_id=request_id,
            timings_ms={"total": _since(started)},
            conversation_id=prepared.conversation_id,
            cached=True,
        )

    async def _record_turn(
        self, prepared: PreparedQuestion, retrieval: RetrievalEvent, answer: str, request_id: str
    ) -> None:
        """The answered turn, into its conversation (a no-op without one)."""
        await self.conversations.record(
            prepared.conversation_id,
            prepared.caller,
            Turn(
                question=prepared.question,
                standalone=prepared.search_question,
                answer=answer,
                sources=[source.source for source in retrieval.sources],
                request_id=request_id,
                prompt=prepared.prompt.ref,
            ),
        )


def _follow(trace: RequestTrace, event: PipelineEvent) -> None:
    """What the events say about the run, into its trace."""
    if isinstance(event, DoneEvent):
        trace.outcome = "cached" if event.cached else "done"
        trace.cached = event.cached
        trace.citations = event.citations
        trace.model = event.model
        trace.timings_ms = event.timings_ms
        if event.cached:
            trace.input_tokens, trace.output_tokens = event.usage.input_tokens, event.usage.output_tokens
        limit = trace.max_output_tokens
        trace.finish_reason = "length" if limit is not None and trace.output_tokens >= limit else "stop"
    elif isinstance(event, ErrorEvent):
        trace.outcome = "error"
        trace.error = TraceError(code=event.code, message=event.message)
        trace.finish_reason = "token_budget_exhausted" if event.code == "token_budget_exhausted" else "error"
    elif isinstance(event, RetrievalEvent) and trace.retrieval_status is None:  # a cached answer's
        trace.retrieval_status = event.status


def _prompt_tokens(prompt: Prompt, counter: ClaudeTokenEstimate) -> int:
    return counter.count(prompt.system) + sum(counter.count(m.content) for m in prompt.messages)


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
                # Calibrated (the same scale for every question); the fused score only orders
                # this question's candidates, and its best is near 1 by construction.
                score=round(relevance_of(chunk) or 0.0, 4),
                snippet=snippet,
                heading=record.heading,
                page=record.page,
            )
        )
    return views
