"""The per-request collaborators the pipeline consults, as Protocols, with their null versions.

The pipeline does not know where a prompt version, a conversation, a cached answer, a token
budget or the observer of finished runs comes from: ``app.services`` wires the real ones
(``app.prompting``, ``app.answers``, ``app.access``, ``app.observability``); the null versions
here are what a pipeline without them does (one fixed prompt, no memory of earlier turns, no
cache, no budget, nobody watching), and what unit tests use.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from app.observability import RequestTrace
from app.prompting import PromptTemplate
from app.records import Caller
from app.retrieval import RetrievalFilters

__all__ = [
    "UNLIMITED",
    "AnswerCache",
    "AnswerKey",
    "CachedAnswer",
    "Conversations",
    "FixedPrompt",
    "NoAnswerCache",
    "NoConversations",
    "NoObserver",
    "PromptChoice",
    "PromptSelector",
    "RequestObserver",
    "TokenBudget",
    "Turn",
    "Unlimited",
]


class PromptChoice(msgspec.Struct, frozen=True, kw_only=True):
    """The prompt version that answers one request, and why it was chosen."""

    template: PromptTemplate
    name: str
    version: str
    reason: str = "default"
    """``label:<label>``, ``experiment:<name>``, ``tenant:<tenant>``, ``override``, ``default``."""

    @property
    def ref(self) -> str:
        """``name@version``: what every done event, answer, trace and log line records."""
        return f"{self.name}@{self.version}"


class PromptSelector(Protocol):
    async def select(self, caller: Caller, *, override: str | None = None) -> PromptChoice:
        """The prompt for this caller. ``override`` (a version an admin asked for by header)
        wins; an unknown one raises ``InvalidRequestError``."""
        ...


class FixedPrompt:
    """Always the same prompt version."""

    def __init__(self, template: PromptTemplate, *, name: str = "answer") -> None:
        self.choice = PromptChoice(template=template, name=name, version=template.version)

    async def select(self, caller: Caller, *, override: str | None = None) -> PromptChoice:
        return self.choice


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One answered question of a conversation."""

    question: str
    standalone: str
    """What was searched for it."""
    answer: str
    sources: list[str]
    """Paths of the sources the answer was given with."""
    request_id: str = ""
    """The request that answered it: what its feedback names (``POST /ask/{request_id}/feedback``)."""
    prompt: str = ""
    """``name@version`` of the prompt that answered it."""


class Conversations(Protocol):
    async def standalone(self, conversation_id: str, caller: Caller, question: str) -> str:
        """``question`` made standalone from the conversation's earlier turns.

        Raises ``NotFoundError`` when the conversation does not exist or belongs to another
        key (whose conversations are not disclosed).
        """
        ...

    async def record(self, conversation_id: str, caller: Caller, turn: Turn) -> None:
        """Append an answered turn (starting the conversation, owned by ``caller``, if new).

        Called once for every answered request, so it is also where what a request answered is
        kept for its feedback."""
        ...


class NoConversations:
    """Every question stands alone; nothing is remembered."""

    async def standalone(self, conversation_id: str, caller: Caller, question: str) -> str:
        return question

    async def record(self, conversation_id: str, caller: Caller, turn: Turn) -> None:
        return None


class AnswerKey(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an answer depends on besides the documents (the cache adds the index version)."""

    question: str
    """The standalone question, whitespace-normalised."""
    filters: RetrievalFilters | None
    top_k: int
    tenant: str
    prompt: str
    """``name@version``."""
    model: str


class CachedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A finished answer, enough to replay the same event protocol."""

    retrieval: msgspec.Raw
    """The retrieval event as JSON (``app.pipeline.events.RetrievalEvent``)."""
    answer: str
    citations: list[int]
    input_tokens: int
    output_tokens: int
    model: str


class AnswerCache(Protocol):
    async def lookup(self, key: AnswerKey) -> CachedAnswer | None:
        """A stored answer for ``key`` at the current index version; None on a miss or a fault."""
        ...

    async def store(self, key: AnswerKey, answer: CachedAnswer) -> None:
        """Keep ``answer`` for ``key`` (a fault is logged, never raised)."""
        ...


class NoAnswerCache:
    async def lookup(self, key: AnswerKey) -> CachedAnswer | None:
        return None

    async def store(self, key: AnswerKey, answer: CachedAnswer) -> None:
        return None


class TokenBudget(Protocol):
    """The token limits one answer draws on: reserve before generating, settle after."""

    async def reserve(self, *, input_tokens: int, max_output_tokens: int) -> int:
        """Reserve the prompt plus up to ``max_output_tokens``; the output tokens granted.

        Fewer than asked when a budget is nearly spent (the stream then ends with a
        ``token_budget_exhausted`` error when the answer reaches them); 0 when it is spent.
        """
        ...

    async def settle(self, *, input_tokens: int, output_tokens: int) -> None:
        """Replace the reservation by the real usage. Called once after every ``reserve``."""
        ...


class Unlimited:
    async def reserve(self, *, input_tokens: int, max_output_tokens: int) -> int:
        return max_output_tokens

    async def settle(self, *, input_tokens: int, output_tokens: int) -> None:
        return None


UNLIMITED = Unlimited()
"""The budget of a pipeline run without token limits (evaluation, unit tests)."""


class RequestObserver(Protocol):
    """Told what happened to each run, once, when it ends (done, error, cached, client gone)."""

    def finished(self, trace: RequestTrace) -> None:
        """Must not block or raise: the run's last event has just been sent. I/O is queued."""
        ...


class NoObserver:
    """Nobody watches: no spans, no metrics, no records."""

    def finished(self, trace: RequestTrace) -> None:
        return None
