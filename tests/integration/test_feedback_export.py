"""``kb feedback export`` reads the ratings from the real shared store (a real redis-server, or
the local state file of the data folder) and writes a QA set that ``kb eval``'s reader loads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.answers import AnswerFeedback, AnswerRecord
from app.cli import cli
from app.config import load_settings
from app.evaluation.datasets import QA_QUESTIONS, load_qa
from app.records import Caller
from app.state import open_state_store
from tests.fakes.anthropic_server import closed_port_url
from tests.fakes.state import Backend, state_backend

__all__ = ["state_backend"]  # the fixture, found by name in this module

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="default", role="user")


async def rate(environ: dict[str, str], ratings: list[tuple[str, str, str | None]]) -> None:
    """Ratings as the service stores them: what each request answered, then its rating."""
    settings = load_settings(environ=environ)
    state = open_state_store(settings)
    feedback = AnswerFeedback(state, window_s=600, retention_days=30, max_per_day=100)
    try:
        for request_id, rating, comment in ratings:
            await feedback.remember(
                AnswerRecord(
                    request_id=request_id,
                    conversation_id="conv-0001",
                    tenant="default",
                    subject=ALICE.subject,
                    question=f"question {request_id}?",
                    standalone=f"standalone question {request_id}?",
                    answer=f"answer {request_id} [1].",
                    sources=["docs/guide.md"],
                    prompt="answer@v1",
                    answered_at=0.0,
                )
            )
            await feedback.rate(ALICE, request_id, rating, comment)  # type: ignore[arg-type]
    finally:
        await state.aclose()


def test_the_exported_down_votes_are_a_qa_set_kb_eval_reads(state_backend: Backend, tmp_path: Path) -> None:
    environ = {"KB_DATA_DIR": str(tmp_path / "data"), **state_backend.environ}
    asyncio.run(
        rate(environ, [("req-1", "up", None), ("req-2", "down", "It is 10 days."), ("req-3", "down", None)])
    )

    result = CliRunner().invoke(
        cli, ["feedback", "export", "--rating", "down", str(tmp_path / "set")], env=environ
    )

    assert result.exit_code == 0, result.output
    assert (
        "wrote 1 question(s)" in result.output and "1 down-voted answer(s) without a comment" in result.output
    )
    (item,) = load_qa(tmp_path / "set" / QA_QUESTIONS)
    assert (item.id, item.question, item.answers) == (
        "req-2",
        "standalone question req-2?",
        ["It is 10 days."],
    )


def test_every_rating_is_exported_without_a_filter(state_backend: Backend, tmp_path: Path) -> None:
    environ = {"KB_DATA_DIR": str(tmp_path / "data"), **state_backend.environ}
    asyncio.run(rate(environ, [("req-1", "up", None), ("req-2", "down", "It is 10 days.")]))

    result = CliRunner().invoke(cli, ["feedback", "export", str(tmp_path / "set")], env=environ)

    assert result.exit_code == 0, result.output
    assert [item.id for item in load_qa(tmp_path / "set" / QA_QUESTIONS)] == ["req-1", "req-2"]


def test_an_unreachable_state_store_is_reported_not_a_traceback(tmp_path: Path) -> None:
    port = closed_port_url().rsplit(":", 1)[1]
    environ = {
        "KB_DATA_DIR": str(tmp_path),
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "KB_STATE__TIMEOUT_S": "0.5",
    }

    result = CliRunner().invoke(cli, ["feedback", "export", str(tmp_path / "set")], env=environ)

    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "set").exists()
