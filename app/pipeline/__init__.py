"""The /ask pipeline (``AskPipeline``), its events and the per-request hooks it consults."""

from __future__ import annotations

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
    FixedPrompt,
    PromptChoice,
    PromptSelector,
    TokenBudget,
    Turn,
)
from app.pipeline.runner import SYSTEM_CALLER, AskPipeline, PreparedQuestion, ValidQuestion

__all__ = [
    "SYSTEM_CALLER",
    "UNLIMITED",
    "AnswerCache",
    "AnswerKey",
    "AskPipeline",
    "AskRequest",
    "CachedAnswer",
    "Conversations",
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "FixedPrompt",
    "PipelineEvent",
    "PreparedQuestion",
    "PromptChoice",
    "PromptSelector",
    "RetrievalEvent",
    "SourceView",
    "TokenBudget",
    "Turn",
    "UsageView",
    "ValidQuestion",
]
