"""Domain errors.

Every failure the service can explain to a caller is one of these. The HTTP layer maps them to
status codes in one place (``app.http.errors``); the CLI prints their message and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EmbeddingModelError",
    "InvalidRequestError",
    "KBError",
    "ModelMismatchError",
    "ProviderError",
    "QuestionTooLongError",
    "StoreLockedError",
    "StoreUnavailableError",
]


class KBError(Exception):
    """Base class of every error this project raises on purpose."""

    code: str = "kb_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(KBError):
    """Configuration is missing, malformed or out of range. Raised before anything starts."""

    code = "config_error"


class EmbeddingModelError(KBError):
    """The embedding model could not be loaded (not installed, not found offline, broken)."""

    code = "embedding_model_error"


class StoreLockedError(KBError):
    """The embedded Qdrant store is held by another process."""

    code = "store_locked"


class StoreUnavailableError(KBError):
    """The vector store could not be reached or failed a request."""

    code = "store_unavailable"


class ModelMismatchError(KBError):
    """A collection was filled by a different embedding model (or dimension) than configured."""

    code = "model_mismatch"


class InvalidRequestError(KBError):
    """A request that is well-formed JSON but asks for something not allowed."""

    code = "invalid_request"


class QuestionTooLongError(KBError):
    """The question exceeds its token limit. Refused, never silently truncated."""

    code = "question_too_long"


class ProviderError(KBError):
    """The language-model provider failed. ``retryable`` tells the client whether to try again."""

    code = "provider_error"

    def __init__(self, message: str, *, code: str = "provider_error", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
