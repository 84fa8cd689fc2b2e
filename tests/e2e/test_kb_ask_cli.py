"""``kb ask`` streams an answer from a running service to the terminal."""

from __future__ import annotations

import re

import msgspec
import pytest
from click.testing import CliRunner

from app.access.testing import declared_key
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


def test_kb_ask_sends_the_api_key_a_closed_service_requires(start_app) -> None:
    key, entry = declared_key("cli", role="user")
    closed = {"access": {"anonymous": False, "keys": [msgspec.to_builtins(entry)]}}
    with start_app(**closed) as server:
        without = CliRunner().invoke(cli, ["ask", "--url", server.base_url, "How do I install on Linux?"])
        with_key = CliRunner().invoke(
            cli, ["ask", "--url", server.base_url, "How do I install on Linux?"], env={"KB_API_KEY": key}
        )

    assert without.exit_code == 1
    assert "error: unauthenticated" in without.stderr
    assert with_key.exit_code == 0, with_key.output
    assert "retrieval: ok" in with_key.stderr
    assert key not in with_key.output  # never echoed


def test_kb_ask_continues_a_conversation(kb_server) -> None:
    first = CliRunner().invoke(cli, ["ask", "--url", kb_server.base_url, "How do I install on Linux?"])
    assert first.exit_code == 0, first.output
    (conversation,) = re.findall(r"kb ask --conversation (\S+)", first.stderr)

    follow_up = CliRunner().invoke(
        cli, ["ask", "--url", kb_server.base_url, "--conversation", conversation, "and on macOS?"]
    )

    assert follow_up.exit_code == 0, follow_up.output
    assert "retrieval: ok" in follow_up.stderr
    assert "for '" in follow_up.stderr  # the standalone question searched is shown
