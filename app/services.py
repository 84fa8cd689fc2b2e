"""The long-lived objects a running service shares across requests, built once at start-up."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from app.config import PROJECT_ROOT
from app.embedding import Embedder, SentenceTransformerEmbedder
from app.errors import ModelMismatchError, StoreLockedError, StoreUnavailableError
from app.generation.base import ModelProvider
from app.generation.registry import build_provider
from app.pipeline import AskPipeline
from app.prompting import PromptRegistry
from app.retrieval import Retriever
from app.settings import Settings
from app.store import QdrantStore, open_store

__all__ = ["Services", "build_services"]

log = structlog.get_logger("kb.services")


@dataclass(slots=True)
class Services:
    settings: Settings
    embedder: Embedder
    provider: ModelProvider
    prompts: PromptRegistry
    retriever: Retriever
    pipeline: AskPipeline
    store_problem: str | None = None
    """Why the store could not be opened at start-up (None when it is open)."""
    _reopen_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def store(self) -> QdrantStore | None:
        return self.retriever.store

    async def ensure_store(self) -> str | None:
        """Open the store if it is not open yet (say, `kb ingest` held it at start-up).

        Returns the problem, or None when the store is open and reachable.
        """
        async with self._reopen_lock:
            if self.retriever.store is None:
                try:
                    self.retriever.store = await asyncio.to_thread(open_store, self.settings)
                    self.store_problem = None
                except (StoreLockedError, StoreUnavailableError) as exc:
                    self.store_problem = exc.message
                    return exc.message
            try:
                await asyncio.wait_for(self.retriever.ping(), self.settings.retrieval.timeout_s)
            except Exception as exc:  # unreachable server, timeout: all mean "not ready"
                return f"vector store unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
            return None

    async def aclose(self) -> None:
        await self.provider.aclose()
        self.retriever.close()
        if self.retriever.store is not None:
            self.retriever.store.close()


def build_services(settings: Settings, *, embedder: Embedder | None = None) -> Services:
    """Load the model, open the store and wire the pipeline. Blocking: run it off the event loop."""
    embedder = embedder or SentenceTransformerEmbedder(settings.embedding)
    embedder.embed(["warm-up"])  # first encode allocates; pay it now, not on the first request
    prompts_dir = Path(settings.prompts.directory)
    prompts = PromptRegistry(prompts_dir if prompts_dir.is_absolute() else PROJECT_ROOT / prompts_dir)
    prompts.get(settings.prompts.version)  # an unknown version fails start-up, not the first request
    provider = build_provider(settings)

    store: QdrantStore | None = None
    problem: str | None = None
    try:
        store = open_store(settings)
    except (StoreLockedError, StoreUnavailableError) as exc:
        problem = exc.message
        log.warning("store_unavailable_at_startup", problem=problem)
    if store is not None:
        try:
            if store.exists():
                store.check_model(model_name=embedder.model_name, dimension=embedder.dimension)
        except ModelMismatchError:
            store.close()
            raise  # a store filled by another model must fail start-up, not be served
        except Exception as exc:
            # A server that does not answer (yet): keep the client, so each request tries it
            # again and reports what really happens (error, or timeout for a slow server);
            # dropping it here would turn every later request into "error" until a probe reopens it.
            problem = (
                exc.message if isinstance(exc, StoreUnavailableError) else f"vector store unreachable: {exc}"
            )
            log.warning("store_unavailable_at_startup", problem=problem)

    # The embedded store is not thread-safe: one worker. A server takes a few concurrent calls.
    workers = 4 if settings.secrets.qdrant_url else 1
    retriever = Retriever(
        store,
        embedder,
        settings.retrieval,
        executor=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kb-retrieval"),
    )
    pipeline = AskPipeline(
        retriever=retriever,
        question_counter=embedder,
        prompts=prompts,
        prompt_version=lambda: settings.prompts.version,
        provider=provider,
        retrieval=settings.retrieval,
        ranking=settings.ranking,
        question_token_limit=min(settings.ranking.question_max_tokens, embedder.max_tokens),
    )
    return Services(
        settings=settings,
        embedder=embedder,
        provider=provider,
        prompts=prompts,
        retriever=retriever,
        pipeline=pipeline,
        store_problem=problem,
    )
