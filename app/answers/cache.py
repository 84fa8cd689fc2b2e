"""The answer cache and the index version it is keyed by, both in the state store.

An entry's key is a digest of everything the answer depends on: the normalised standalone
question, the filters, ``top_k``, the tenant, the prompt version, the model, and the collection's
*index version*, a state-store counter that ``kb ingest`` bumps whenever it writes or deletes
anything (``bump_index_version``). After an ingest every earlier entry is unreachable (it
expires by its TTL), so no answer is served from a replaced document.

The version an answer is stored under is the one its lookup saw, before retrieval: an ingest
that finishes while the answer is generated bumps past it, so that answer, made from the old
documents, is never served. A fault of the state store is a miss (and a log line) on lookup and
a skipped write on store: a cache never fails an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from collections import OrderedDict
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import structlog

from app.errors import StateUnavailableError
from app.settings import Settings
from app.state import StateStore, open_state_store

__all__ = [
    "IndexVersion",
    "StateAnswerCache",
    "bump_index_version",
    "cache_digest",
    "normalise_question",
]

log = structlog.get_logger("kb.answers.cache")

# Lookups whose store may still come (the answer is being generated): their index version is
# kept until then. Past this many at once, the oldest lose it and their answers are not kept.
_IN_FLIGHT = 4096


class CacheKey(Protocol):
    """What the cache needs of a key (``app.pipeline.hooks.AnswerKey``, a msgspec Struct)."""

    @property
    def question(self) -> str: ...


K = TypeVar("K", bound=CacheKey)
A = TypeVar("A")


def normalise_question(question: str) -> str:
    """What makes two questions the same question: Unicode compatibility forms, case,
    whitespace, and punctuation around it ("What is kb?" = "what is KB").

    Punctuation inside stays: "C++" is not "C", nor "v1.2" "v12".
    """
    text = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    start, end = 0, len(text)
    while start < end and _trimmed(text[start]):
        start += 1
    while end > start and _trimmed(text[end - 1]):
        end -= 1
    return text[start:end]


def _trimmed(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def cache_digest(key: object) -> str:
    """A stable digest of ``key`` with its question normalised and its filters canonical
    (document paths in any order, no filter = an empty filter)."""
    fields: dict[str, Any] = msgspec.to_builtins(key)
    fields["question"] = normalise_question(str(fields.get("question", "")))
    filters = fields.get("filters")
    if isinstance(filters, dict):
        if isinstance(filters.get("sources"), list):
            filters["sources"] = sorted(set(filters["sources"]))
        if all(value is None for value in filters.values()):
            fields["filters"] = None
    canonical = msgspec.json.encode(fields, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


class IndexVersion:
    """The collection's index version: a counter in the state store, bumped by ``kb ingest``."""

    def __init__(self, state: StateStore, collection: str) -> None:
        self.state = state
        self.key = f"index-version:{collection}"

    async def current(self) -> int:
        return await self.state.incr(self.key, 0)

    async def bump(self) -> int:
        return await self.state.incr(self.key, 1)


def bump_index_version(settings: Settings) -> int:
    """Bump the configured collection's index version (``kb ingest``, after it wrote or deleted
    something). Raises ``StateUnavailableError`` when the state store cannot be reached."""

    async def bump() -> int:
        state = open_state_store(settings)
        try:
            return await IndexVersion(state, settings.store.collection).bump()
        finally:
            await state.aclose()

    return asyncio.run(bump())


class StateAnswerCache(Generic[K, A]):
    """``app.pipeline.hooks.AnswerCache`` over a ``StateStore``: answers of type ``answer_type``."""

    def __init__(self, state: StateStore, *, collection: str, ttl_s: float, answer_type: type[A]) -> None:
        self.state = state
        self.collection = collection
        self.ttl_s = ttl_s
        self.index = IndexVersion(state, collection)
        self._decode = msgspec.json.Decoder(answer_type).decode
        # id(key) -> (key, the index version its lookup saw). The key is held so that its id is
        # not reused while the entry lives; the pipeline passes the same key object to both calls.
        self._looked_up: OrderedDict[int, tuple[K, int]] = OrderedDict()

    def _entry_key(self, key: K, version: int) -> str:
        return f"answer-cache:{self.collection}:{version}:{cache_digest(key)}"

    async def lookup(self, key: K) -> A | None:
        try:
            version = await self.index.current()
            raw = await self.state.get(self._entry_key(key, version))
        except StateUnavailableError as exc:
            log.warning("answer_cache_unavailable", operation="lookup", error=exc.message)
            return None
        if raw is not None:
            try:
                return self._decode(raw)
            except msgspec.DecodeError:  # written by an incompatible version: a miss, replaced
                log.warning("answer_cache_entry_unreadable")
        self._looked_up[id(key)] = (key, version)
        while len(self._looked_up) > _IN_FLIGHT:
            self._looked_up.popitem(last=False)
        return None

    async def store(self, key: K, answer: A) -> None:
        seen = self._looked_up.pop(id(key), None)
        if seen is None or seen[0] is not key:
            return  # no lookup saw an index version for it (or the store failed then)
        try:
            await self.state.set(self._entry_key(key, seen[1]), msgspec.json.encode(answer), ttl_s=self.ttl_s)
        except StateUnavailableError as exc:
            log.warning("answer_cache_unavailable", operation="store", error=exc.message)
