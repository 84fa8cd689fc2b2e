"""``kb prompts list|promote|rollback|reset|lock`` on the real state store a service reads."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.config import load_settings
from app.prompting import PromptLabels, PromptRegistry, PromptSelection
from app.records import Caller
from app.resources import prompts_dir
from app.state import open_state_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="sales", role="user")


def kb(env: dict[str, str], *args: str) -> Result:
    # Nothing of the developer's shell: no REDIS_URL unless a test gives one.
    return CliRunner().invoke(cli, ["prompts", *args], env={"REDIS_URL": "", **env}, catch_exceptions=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"KB_DATA_DIR": str(tmp_path / "data")}


async def served_version(environ: dict[str, str]) -> str:
    """What a service with this configuration answers with now."""
    settings = load_settings(environ=environ)
    registry = PromptRegistry(prompts_dir(settings.prompts.directory, environ))
    state = open_state_store(settings)
    try:
        selection = PromptSelection(
            registry, PromptLabels(state, registry, settings.prompts), settings.prompts
        )
        return (await selection.answer(ALICE)).ref
    finally:
        await state.aclose()


def test_promote_then_rollback_moves_what_a_service_answers_with(env: dict[str, str]) -> None:
    promoted = kb(env, "promote", "answer", "v2")
    assert promoted.exit_code == 0, promoted.output
    assert "answer label production: v1 -> v2 (promote)" in promoted.output
    assert asyncio.run(served_version(env)) == "answer@v2"

    rolled = kb(env, "rollback", "answer")
    assert rolled.exit_code == 0 and "v2 -> v1 (rollback)" in rolled.output
    assert asyncio.run(served_version(env)) == "answer@v1"

    again = kb(env, "rollback", "answer")
    assert again.exit_code != 0 and "no earlier version to roll back to" in again.output


def test_list_shows_versions_labels_and_who_moved_them(env: dict[str, str]) -> None:
    kb(env, "promote", "answer", "v2", "--label", "staging")
    listed = kb(env, "list")
    assert listed.exit_code == 0, listed.output
    assert "follows label 'production'" in listed.output
    assert "v1       released sha256:" in listed.output
    assert "label production -> v1 (as configured)  (followed here)" in listed.output
    assert "label staging -> v2 (moved by " in listed.output and "(kb prompts)" in listed.output
    assert "rollback -> v1" in listed.output

    shown = json.loads(kb(env, "list", "--json").output)
    answer = next(p for p in shown["prompts"] if p["name"] == "answer")
    assert {label["label"]: label["version"] for label in answer["labels"]} == {
        "production": "v1",
        "staging": "v2",
    }
    assert [m["action"] for m in answer["moves"]] == ["promote"]


def test_reset_returns_to_the_configuration(env: dict[str, str]) -> None:
    kb(env, "promote", "answer", "v2")
    reset = kb(env, "reset", "answer")
    assert reset.exit_code == 0 and "v2 -> v1 (reset)" in reset.output
    assert asyncio.run(served_version(env)) == "answer@v1"


def test_an_unknown_version_or_prompt_is_refused_with_what_exists(env: dict[str, str]) -> None:
    unknown = kb(env, "promote", "answer", "v9")
    assert (
        unknown.exit_code != 0
        and "unknown version 'v9' of prompt 'answer'; available: v1, v2" in unknown.output
    )
    nothing = kb(env, "promote", "summary", "v1")
    assert nothing.exit_code != 0 and "no prompt named 'summary'" in nothing.output


def test_a_move_made_in_redis_is_what_every_instance_there_answers_with(
    env: dict[str, str], redis_url: str
) -> None:
    in_redis = {**env, "REDIS_URL": redis_url}
    assert kb(in_redis, "promote", "answer", "v2").exit_code == 0
    assert asyncio.run(served_version(in_redis)) == "answer@v2"
    assert asyncio.run(served_version(env)) == "answer@v1"  # the local file was not touched


def test_lock_releases_new_versions_and_check_fails_on_drafts_and_edits(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    shutil.copytree(prompts_dir(environ={}), folder)
    env = {"KB_PROMPTS_DIR": str(folder), "KB_DATA_DIR": str(tmp_path / "data")}
    assert kb(env, "lock", "--check").exit_code == 0

    text = (
        (folder / "answer" / "v2.toml")
        .read_text(encoding="utf-8")
        .replace('version = "v2"', 'version = "v3"')
    )
    (folder / "answer" / "v3.toml").write_text(text, encoding="utf-8")
    check = kb(env, "lock", "--check")
    assert check.exit_code != 0 and "answer@v3 is not released yet" in check.output

    locked = kb(env, "lock")
    assert locked.exit_code == 0 and "released answer@v3" in locked.output
    assert kb(env, "lock").output.startswith("nothing to release")

    (folder / "answer" / "v3.toml").write_text(text + "\n# changed\n", encoding="utf-8")
    edited = kb(env, "lock", "--check")
    assert edited.exit_code != 0 and "answer@v3 was edited in place" in edited.output
    assert kb(env, "lock").exit_code != 0
