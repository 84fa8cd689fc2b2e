"""``kb ask`` streams an answer from a running service to the terminal."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import cli

pytestmark = pytest.mark.e2e


def test_kb_ask_prints_status_sources_and_the_streamed_answer(kb_server) -> None:
    result = CliRunner().invoke(cli, ["ask", "--url", kb_server.base_url, "How do I install on Linux?"])
    assert result.exit_code == 0, result.output
    assert "retrieval: ok" in result.stderr
    assert "[1] " in result.stderr  # numbered sources with titles
    assert "[1]" in result.stdout  # the answer cites them
    assert "cited [" in result.stderr


def test_kb_ask_reports_a_refused_question_and_exits_non_zero(kb_server) -> None:
    result = CliRunner().invoke(cli, ["ask", "--url", kb_server.base_url, "   "])
    assert result.exit_code == 1
    assert "error: invalid_request" in result.stderr


def test_kb_ask_says_when_the_service_is_unreachable() -> None:
    result = CliRunner().invoke(cli, ["ask", "--url", "http://127.0.0.1:9", "anything"])
    assert result.exit_code != 0
    assert "cannot reach the service" in result.output
