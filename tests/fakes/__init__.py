"""Wire-level fakes of external services, for integration and end-to-end tests.

They speak the real protocol over loopback sockets, so the real client libraries run unchanged.
"""

from __future__ import annotations

from tests.fakes.anthropic_server import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    closed_port_url,
    fake_anthropic,
)

__all__ = ["FakeAnthropic", "RecordedRequest", "Reply", "closed_port_url", "fake_anthropic"]
