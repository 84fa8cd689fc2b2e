"""The composition root: the long-lived objects a running service shares, built once at start-up.

``build_services`` loads the embedding model, opens the store, picks the model provider and
wires the retriever and the ``/ask`` pipeline. The HTTP app (``app.http``) and ``kb eval`` both
build their objects here, so neither re-implements the wiring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from opentelemetry.sdk.trace import TracerProvider

from app.access import KeyRing
from app.access.limits import Limiter, open_limiter
from app.answers import Answers, build_answers
from app.embedding import Embedder, EmbeddingBatcher, QueryEmbeddingCache, build_embedder
from app.errors import KBError, ModelMismatchError
from app.generation.base import ModelProvider
from app.generation.registry import build_provider
from app.observability import (
    MULTIPROC_ENV,
    BackgroundWork,
    Metrics,
    RequestObservability,
    RequestRecords,
    Telemetry,
    tracer_provider_from_environment,
)
from app.pipeline import AskPipeline, CachedAnswer, PromptChoice
from app.prompting import PromptLabels, PromptRegistry, PromptSelection
from app.records import Caller
from app.resources import prompts_dir
from app.retrieval import Retriever
from app.retrieval.admission import queue_for
from app.settings import Settings
from app.state import StateStore, open_state_store
from app.store import QdrantStore, open_store
from app.store.connection import StoreConnection

__all__ = ["Services", "build_services", "build_telemetry", "open_checked_store"]

log = structlog.get_logger("kb.services")


@dataclass(slots=True)
class Services:
    """What ``kb serve`` (and ``kb eval``) share across requests: built once, closed once."""

    settings: Settings
    embedder: Embedder
    provider: ModelProvider
    prompts: PromptRegistry
    prompt_selection: PromptSelection
    """Which prompt version answers (labels in ``state``, pins, experiments)."""
    connection: StoreConnection
    """The store, opened on demand (by any request) with the start-up checks."""
    retriever: Retriever
    pipeline: AskPipeline
    state: StateStore
    """Shared state (keys, prompt labels, conversations, caches, feedback): Redis or a local file."""
    keys: KeyRing
    """API keys: declared in configuration, or stored in ``state``."""
    answers: Answers[CachedAnswer]
    """Conversations, the answer cache and answer feedback (in ``state``)."""
    limits: Limiter
    """Request, concurrency and token limits: in memory, or in Redis when ``REDIS_URL`` is set."""
    telemetry: Telemetry
    """The tracer provider (None: tracing off) and the metrics (None: metrics off)."""
    background: BackgroundWork
    """Post-response work (request records; accounting that must not delay the answer)."""
    records: RequestRecords
    """What happened to each request, for ``GET /admin/requests/{request_id}``."""

    @property
    def metrics(self) -> Metrics | None:
        """The Prometheus series (``rate_limit_refused``, ``ingested``...), or None when off."""
        return self.telemetry.metrics

    @property
    def store(self) -> QdrantStore | None:
        """The open store, or None while it cannot be opened."""
        return self.connection.current

    async def ensure_store(self) -> str | None:
        """Open the store if it is not open yet, and check it answers; the problem, or None.

        Runs on a store worker, ahead of queued searches (``Retriever.ping``), within the
        retrieval timeout.
        """
        try:
            await asyncio.wait_for(self.retriever.ping(), self.settings.retrieval.timeout_s)
        except KBError as exc:
            return exc.message
        except Exception as exc:  # unreachable server, timeout: all mean "not ready"
            return f"vector store unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
        return None

    async def ensure_state(self) -> str | None:
        """Check the state store answers now (within ``state.timeout_s``); the problem, or None."""
        try:
            await self.state.ping()
        except KBError as exc:  # StateUnavailableError: the store bounds and words its faults
            return exc.message
        return None

    async def aclose(self) -> None:
        # First: the waiting post-response jobs still need the state store.
        await self.background.drain(self.settings.observability.drain_timeout_s)
        await self.provider.aclose()
        await self.state.aclose()
        await self.limits.aclose()
        self.retriever.close()
        self.connection.close()
        self.telemetry.close()


def open_checked_store(settings: Settings, embedder: Embedder) -> StoreConnection:
    """The configured store behind a ``StoreConnection``, opened now if it can be.

    A collection filled by another embedding model fails here (start-up must not serve it). A
    store that is locked by ``kb ingest`` or a server that does not answer yet is only logged:
    the first request that needs the store opens it, with the same checks.
    """
    connection = StoreConnection(
        lambda: open_store(settings),
        model_name=embedder.model_name,
        dimension=embedder.dimension,
        legacy_tenant=settings.ingest.tenant,
    )
    try:
        connection.connect()
    except ModelMismatchError:
        raise
    except KBError as exc:
        log.warning("store_unavailable_at_startup", problem=exc.message)
    return connection


class _PipelinePrompts:
    """The pipeline's ``PromptSelector`` over ``PromptSelection`` (``PromptChoice`` belongs to
    ``app.pipeline``, which ``app.prompting`` sits below)."""

    def __init__(self, selection: PromptSelection) -> None:
        self.selection = selection

    async def select(self, caller: Caller, *, override: str | None = None) -> PromptChoice:
        chosen = await self.selection.answer(caller, override=override)
        return PromptChoice(
            template=chosen.template, name=chosen.name, version=chosen.version, reason=chosen.reason
        )


def build_telemetry(
    settings: Settings, environ: Mapping[str, str], *, tracer_provider: TracerProvider | None = None
) -> Telemetry:
    """The tracer provider (OTLP when ``environ`` names an endpoint; or the one given, which the
    caller keeps owning) and the metrics: built before the app, whose middleware uses them."""
    metrics = None
    if settings.observability.metrics:
        metrics = Metrics(multiprocess_dir=environ.get(MULTIPROC_ENV) or None)
    if tracer_provider is not None:
        return Telemetry(tracer_provider=tracer_provider, metrics=metrics, owns_provider=False)
    return Telemetry(tracer_provider=tracer_provider_from_environment(environ), metrics=metrics)


def build_services(
    settings: Settings, *, embedder: Embedder | None = None, telemetry: Telemetry | None = None
) -> Services:
    """Load the model, open the store and wire the pipeline. Blocking: run it off the event loop.

    ``telemetry`` is the app's (``build_telemetry``); without it (``kb eval``) nothing is traced
    or counted.
    """
    telemetry = telemetry or Telemetry(tracer_provider=None, metrics=None)
    metrics = telemetry.metrics
    embedder = embedder or build_embedder(settings)
    embedder.embed(["warm-up"])  # first encode allocates; pay it now, not on the first request
    prompts = PromptRegistry(prompts_dir(settings.prompts.directory))
    state = open_state_store(settings)
    # A version the settings name that does not exist fails start-up, not the first request.
    selection = PromptSelection(prompts, PromptLabels(state, prompts, settings.prompts), settings.prompts)
    connection = open_checked_store(settings, embedder)

    # Questions arriving together share one model call (the cache answers repeats before it);
    # retrievals are admitted up to a bound and searched by a small pool (docs/load.md).
    size = settings.answers.embedding_cache_size
    questions = EmbeddingBatcher(
        QueryEmbeddingCache(embedder, size) if size else embedder,  # questions repeat; chunks do not
        window_s=settings.retrieval.batch_window_ms / 1000,
        max_batch=settings.retrieval.batch_max,
        on_batch=metrics.query_batch if metrics is not None else None,
    )
    # The offline answerer's sentences queue behind questions: under a burst, retrievals (which
    # have a deadline) are not stuck behind answers being written.
    provider = build_provider(settings, embedder=questions.background)
    retriever = Retriever(
        connection,
        questions,
        settings.retrieval,
        queue=queue_for(
            settings.retrieval,
            on_depth=metrics.retrieval_depth if metrics is not None else None,
            on_dropped=metrics.retrieval_dropped if metrics is not None else None,
        ),
    )
    answers = build_answers(
        state,
        settings,
        provider=provider,
        # Without a condense prompt, follow-ups are condensed by their terms (logged at start-up).
        condense_prompts=selection if "condense" in prompts.names() else None,
        answer_type=CachedAnswer,
    )
    observability = settings.observability
    background = BackgroundWork(
        max_size=observability.background_queue,
        job_timeout_s=observability.background_timeout_s,
        on_depth=metrics.background_depth if metrics is not None else None,
        on_dropped=metrics.background_dropped_job if metrics is not None else None,
    )
    records = RequestRecords(state, count=observability.record_count, ttl_s=observability.record_ttl_s)
    observer = RequestObservability(
        observability,
        background=background,
        records=records if observability.records else None,
        metrics=metrics,
        tracer=telemetry.tracer(),
    )
    pipeline = AskPipeline(
        retriever=retriever,
        question_counter=embedder,
        prompts=_PipelinePrompts(selection),
        provider=provider,
        retrieval=settings.retrieval,
        ranking=settings.ranking,
        question_token_limit=min(settings.ranking.question_max_tokens, embedder.max_tokens),
        max_output_tokens=settings.generation.max_tokens,
        conversations=answers.conversations,
        answer_cache=answers.cache,
        observer=observer,
    )
    return Services(
        settings=settings,
        embedder=embedder,
        provider=provider,
        prompts=prompts,
        prompt_selection=selection,
        connection=connection,
        retriever=retriever,
        pipeline=pipeline,
        state=state,
        keys=KeyRing(state, settings.access),
        answers=answers,
        limits=open_limiter(settings),
        telemetry=telemetry,
        background=background,
        records=records,
    )
