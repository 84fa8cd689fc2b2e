"""Rate limits at the HTTP boundary: the limiter for handlers (dependency ``limiter``).

The limiter itself (``app.access.limits``) decides and words every refusal; the headers it
returns go on the response, and ``app.http.errors`` turns its refusals into 429 (or 503 when
the limits storage is down and the configuration fails closed).
"""

from __future__ import annotations

from litestar.datastructures import State

from app.access.limits import Limiter
from app.services import Services

__all__ = ["provide_limiter"]


def provide_limiter(state: State) -> Limiter:
    """Dependency: the service's one limiter (built in ``app.services``)."""
    services: Services = state.services
    return services.limits
