"""What happened to one request: the ``RequestTrace`` the pipeline fills, and where it is kept.

The pipeline (``app.pipeline``) fills a ``RequestTrace`` while it answers and hands it to its
``RequestObserver`` once, when the run ends however it ends. The observer (``app.observability``)
turns it into spans and metrics and, after the response, into the record that
``GET /admin/requests/{request_id}`` returns: ``RequestRecords`` keeps those in the state store,
bounded by count and age.

Nothing here holds question or answer text unless the pipeline put it there; ``without_text``
is the one place that removes it, so a configuration that keeps no text keeps none anywhere.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
import structlog

from app.records import Caller, RetrievalStatus, ScoredChunk
from app.state import StateStore

__all__ = [
    "CallerView",
    "ChunkScore",
    "Outcome",
    "RequestRecords",
    "RequestTrace",
    "StageClock",
    "StageTiming",
    "TraceError",
    "chunk_scores",
]

log = structlog.get_logger("kb.observability")

Outcome = Literal["done", "error", "cached", "cancelled"]
"""How a run ended: an answer, an error event, an answer replayed from the cache, or the client
went away (or the run was otherwise abandoned) before the end."""


class CallerView(msgspec.Struct, frozen=True, kw_only=True):
    """Who asked: the key's id and name, never the key."""

    key_id: str | None
    name: str
    tenant: str
    role: str
    tier: str

    @classmethod
    def of(cls, caller: Caller) -> CallerView:
        return cls(
            key_id=caller.key_id, name=caller.name, tenant=caller.tenant, role=caller.role, tier=caller.tier
        )


class ChunkScore(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk as retrieval or ranking scored it."""

    id: str
    """The chunk's point id in the store."""
    source: str
    score: float
    """The fused score that ordered it."""
    dense: float | None = None
    """Cosine similarity to the searched question, when the dense retriever saw it."""
    lexical: float | None = None
    """BM25 score, when the lexical retriever saw it."""
    number: int | None = None
    """In the context: the number the answer cites it by (``[n]``)."""


def chunk_scores(chunks: list[ScoredChunk], *, numbered: bool = False) -> list[ChunkScore]:
    return [
        ChunkScore(
            id=chunk.record.point_id,
            source=chunk.record.source,
            score=round(chunk.score, 4),
            dense=None if chunk.dense_score is None else round(chunk.dense_score, 4),
            lexical=None if chunk.lexical_score is None else round(chunk.lexical_score, 4),
            number=n if numbered else None,
        )
        for n, chunk in enumerate(chunks, start=1)
    ]


class StageTiming(msgspec.Struct, frozen=True, kw_only=True):
    """One stage of a run on its timeline: when it started (from the start of the request's
    handling) and how long it took, in milliseconds."""

    name: str
    start_ms: float
    duration_ms: float


class TraceError(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class StageClock:
    """Times the stages of one run: monotonic durations anchored to one wall-clock instant, so
    that spans made from them afterwards sit where the work happened."""

    __slots__ = ("origin", "stages", "started_ns")

    def __init__(self, *, origin: float | None = None, started_ns: int | None = None) -> None:
        self.origin = time.perf_counter() if origin is None else origin
        self.started_ns = time.time_ns() if started_ns is None else started_ns
        self.stages: list[StageTiming] = []

    def fork(self) -> StageClock:
        """A clock for one run that continues this one's timeline (its stages so far copied)."""
        clock = StageClock(origin=self.origin, started_ns=self.started_ns)
        clock.stages.extend(self.stages)
        return clock

    def offset_ms(self, mark: float) -> float:
        return round((mark - self.origin) * 1000, 2)

    def stage(self, name: str, mark: float, end: float | None = None) -> float:
        """Record stage ``name`` from ``mark`` to ``end`` (default: now); its duration in ms."""
        end = time.perf_counter() if end is None else end
        duration = round((end - mark) * 1000, 2)
        self.stages.append(StageTiming(name=name, start_ms=self.offset_ms(mark), duration_ms=duration))
        return duration


class RequestTrace(msgspec.Struct, kw_only=True):
    """What happened to one request, filled by the pipeline while it runs.

    Mutable while the run goes on; handed to the observer once, at its end.
    """

    request_id: str
    started_ns: int
    """When handling began (ns since the epoch): ``prepare``, or the run when it had none."""
    outcome: Outcome = "cancelled"
    """Until the run says otherwise, it was abandoned."""
    evaluation: bool = False
    """A ``kb eval`` run (mode, fusion or budget given per run): not a client's request."""
    caller: CallerView | None = None
    conversation_id: str = ""
    question: str | None = None
    """As asked (None where text is not kept)."""
    searched: str | None = None
    """What retrieval searched: the follow-up made standalone, or the question (None where text
    is not kept)."""
    prompt: str = ""
    """``name@version``."""
    prompt_reason: str = ""
    """Why that version: ``default``, ``label:<label>``, ``experiment:<name>``, ``override``..."""
    provider: str = ""
    """``anthropic``, ``openai``, ``extractive`` (``gen_ai.system``)."""
    model: str = ""
    cached: bool = False
    retrieval_status: RetrievalStatus | None = None
    """As the client was told: ``empty`` also when candidates came back but none fit the context."""
    retriever_status: RetrievalStatus | None = None
    """As the retriever returned it, before ranking."""
    retrieval_detail: str | None = None
    """Why the retriever's status is not ``ok`` (a timeout, the store's error)."""
    retrieval_ms: float | None = None
    candidates: list[ChunkScore] = []
    """The retriever's relevant fused candidates, best first, before ranking."""
    context: list[ChunkScore] = []
    """What reached the prompt after ranking and pruning, in citation order."""
    citations: list[int] = []
    stages: list[StageTiming] = []
    timings_ms: dict[str, float] = {}
    """As in the ``done`` event."""
    first_token_ms: float | None = None
    """From the start of handling to the first streamed text."""
    input_tokens: int = 0
    output_tokens: int = 0
    max_output_tokens: int | None = None
    tokens_granted: int | None = None
    """Output tokens the token budget granted (fewer than ``max_output_tokens`` when a limit was
    nearly spent; 0 when it was spent)."""
    finish_reason: str | None = None
    """``stop`` (the model ended), ``length`` (it used ``max_output_tokens``),
    ``token_budget_exhausted``, ``error``, ``cancelled``."""
    error: TraceError | None = None
    answer: str | None = None
    trace_id: str | None = None
    """The OpenTelemetry trace id (32 hex digits) when tracing is on: find the spans by it."""

    def without_text(self) -> RequestTrace:
        """This trace with the question, searched question and answer removed."""
        return msgspec.structs.replace(self, question=None, searched=None, answer=None)


_RECORD = "request:{}"
_SLOT = "requests:slot:{}"
_SEQUENCE = "requests:seq"


class RequestRecords:
    """Request traces in the state store: each under its request id for ``ttl_s``, at most
    ``count`` of them.

    The count is kept by a ring of ``count`` slots shared by every instance: each write takes the
    next slot (an atomic counter) and deletes the record that slot held. Each record and slot
    also expires, so an interrupted write leaves nothing behind for longer than ``ttl_s``.
    """

    def __init__(self, state: StateStore, *, count: int, ttl_s: float) -> None:
        self.state = state
        self.count = count
        self.ttl_s = ttl_s

    async def save(self, trace: RequestTrace) -> None:
        """Store ``trace`` (raises ``StateUnavailableError`` when the store fails)."""
        await self.state.set(_RECORD.format(trace.request_id), msgspec.json.encode(trace), ttl_s=self.ttl_s)
        slot = _SLOT.format(await self.state.incr(_SEQUENCE) % self.count)
        evicted = await self.state.get(slot)
        await self.state.set(slot, trace.request_id.encode(), ttl_s=self.ttl_s)
        if evicted is not None and evicted.decode() != trace.request_id:
            await self.state.delete(_RECORD.format(evicted.decode()))

    async def get(self, request_id: str) -> RequestTrace | None:
        """The stored trace of ``request_id``, or None (raises ``StateUnavailableError``)."""
        raw = await self.state.get(_RECORD.format(request_id))
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw, type=RequestTrace)
        except msgspec.DecodeError:  # written by another version of the service
            log.warning("request_record_unreadable", request_id=request_id)
            return None
