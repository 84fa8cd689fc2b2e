"""Domain errors.

Every failure the service can explain to a caller is one of these. The HTTP layer maps them to
status codes in one place (``app.http.errors``); the CLI prints their message and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "EmbeddingModelError",
    "InvalidRequestError",
    "KBError",
    "ModelMismatchError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "QuestionTooLongError",
    "RateLimitedError",
    "StateUnavailableError",
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


class StateUnavailableError(KBError):
    """The state store (Redis, or the local state file) failed or did not answer in time.

    ``retry_after_s``, when given, is sent as ``Retry-After`` with the 503.
    """

    code = "state_unavailable"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuthenticationError(KBError):
    """No credentials, or credentials that are not a valid, unexpired, unrevoked key (401)."""

    code = "unauthenticated"


class PermissionDeniedError(KBError):
    """A valid key that may not do this: wrong role, or a widget key from a foreign origin (403)."""

    code = "forbidden"


class NotFoundError(KBError):
    """A named thing (a conversation, a request, a prompt) that does not exist for this caller (404).

    Also what another key's conversation looks like: its existence is not disclosed.
    """

    code = "not_found"


class RateLimitedError(KBError):
    """A limit refused the request (429). ``limit`` names it; ``retry_after_s`` says when to retry.

    ``headers`` are the rate-limit headers of the limit that tripped, sent with the refusal.
    """

    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        retry_after_s: float,
        code: str = "rate_limited",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})
