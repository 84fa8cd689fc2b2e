"""The composition root: the long-lived objects a running service shares, built once at start-up.

``build_services`` loads the embedding model, opens the store, picks the model provider and
wires the retriever and the ``/ask`` pipeline. The HTTP app (``app.http``) and ``kb eval`` both
build their objects here, so neither re-implements the wiring.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from app.embedding import Embedder, SentenceTransformerEmbedder
from app.errors import KBError, ModelMismatchError
from app.generation.base import ModelProvider
from app.generation.registry import build_provider
from app.pipeline import AskPipeline
from app.prompting import PromptRegistry
from app.resources import prompts_dir
from app.retrieval import Retriever
from app.settings import Settings
from app.store import QdrantStore, open_store
from app.store.connection import StoreConnection

__all__ = ["Services", "build_services", "open_checked_store"]

log = structlog.get_logger("kb.services")


@dataclass(slots=True)
class Services:
    """What ``kb serve`` (and ``kb eval``) share across requests: built once, closed once."""

    settings: Settings
    embedder: Embedder
    provider: ModelProvider
    prompts: PromptRegistry
    connection: StoreConnection
    """The store, opened on demand (by any request) with the start-up checks."""
    retriever: Retriever
    pipeline: AskPipeline

    @property
    def store(self) -> QdrantStore | None:
        """The open store, or None while it cannot be opened."""
        return self.connection.current

    async def ensure_store(self) -> str | None:
        """Open the store if it is not open yet, and check it answers; the problem, or None.

        Runs on the retrieval worker, like every store call (the embedded store is not
        thread-safe), within the retrieval timeout.
        """
        try:
            await asyncio.wait_for(self.retriever.ping(), self.settings.retrieval.timeout_s)
        except KBError as exc:
            return exc.message
        except Exception as exc:  # unreachable server, timeout: all mean "not ready"
            return f"vector store unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
        return None

    async def aclose(self) -> None:
        await self.provider.aclose()
        self.retriever.close()
        self.connection.close()


def open_checked_store(settings: Settings, embedder: Embedder) -> StoreConnection:
    """The configured store behind a ``StoreConnection``, opened now if it can be.

    A collection filled by another embedding model fails here (start-up must not serve it). A
    store that is locked by ``kb ingest`` or a server that does not answer yet is only logged:
    the first request that needs the store opens it, with the same checks.
    """
    connection = StoreConnection(
        lambda: open_store(settings), model_name=embedder.model_name, dimension=embedder.dimension
    )
    try:
        connection.connect()
    except ModelMismatchError:
        raise
    except KBError as exc:
        log.warning("store_unavailable_at_startup", problem=exc.message)
    return connection


def build_services(settings: Settings, *, embedder: Embedder | None = None) -> Services:
    """Load the model, open the store and wire the pipeline. Blocking: run it off the event loop."""
    embedder = embedder or SentenceTransformerEmbedder(settings.embedding)
    embedder.embed(["warm-up"])  # first encode allocates; pay it now, not on the first request
    prompts = PromptRegistry(prompts_dir(settings.prompts.directory))
    prompts.get(settings.prompts.version)  # an unknown version fails start-up, not the first request
    provider = build_provider(settings)
    connection = open_checked_store(settings, embedder)

    # The embedded store is not thread-safe: one worker. A server takes a few concurrent calls.
    workers = 4 if settings.secrets.qdrant_url else 1
    retriever = Retriever(
        connection,
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
        connection=connection,
        retriever=retriever,
        pipeline=pipeline,
    )
