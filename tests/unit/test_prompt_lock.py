"""A released prompt version never changes: the lock of content hashes catches an edit in place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.prompting import LOCK_FILE, PromptRegistry, add_to_lock, check_lock, content_hash
from app.resources import prompts_dir

pytestmark = pytest.mark.unit

PROMPTS = prompts_dir(environ={})


# --- the shipped prompts -------------------------------------------------------------------------


def test_no_released_prompt_version_was_edited_in_place() -> None:
    report = check_lock(PROMPTS)
    assert not report.problems, "\n".join(problem.message for problem in report.problems)


def test_every_shipped_prompt_version_is_released() -> None:
    drafts = [f"{name}@{version}" for name, version in check_lock(PROMPTS).drafts]
    assert not drafts, f"{', '.join(drafts)} not in {PROMPTS / LOCK_FILE}: run `kb prompts lock` to release"


# --- the rules, on a copy ----------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped prompts, with their lock."""
    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS, copy)
    return copy


def test_an_edited_released_version_is_caught_and_the_message_says_how_to_change_it(folder: Path) -> None:
    released = folder / "answer" / "v1.toml"
    released.write_text(
        released.read_text(encoding="utf-8").replace("Be concise", "Be brief"), encoding="utf-8"
    )

    (problem,) = check_lock(folder).problems
    assert (problem.name, problem.version, problem.kind) == ("answer", "v1", "edited")
    assert "answer@v1 was edited in place" in problem.message
    assert "restore answer/v1.toml" in problem.message
    assert "new version file" in problem.message and "`kb prompts lock`" in problem.message


def test_the_registry_refuses_to_serve_an_edited_release(folder: Path) -> None:
    released = folder / "condense" / "v1.toml"
    released.write_text(
        released.read_text(encoding="utf-8") + "\n# a comment is an edit too\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"condense@v1 was edited in place"):
        PromptRegistry(folder)


def test_locking_refuses_an_edited_release_and_leaves_the_lock_as_it_was(folder: Path) -> None:
    before = (folder / LOCK_FILE).read_bytes()
    released = folder / "answer" / "v1.toml"
    released.write_text(released.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(ConfigError, match="edited in place"):
        add_to_lock(folder)
    assert (folder / LOCK_FILE).read_bytes() == before


def test_a_deleted_release_is_caught(folder: Path) -> None:
    (folder / "answer" / "v1.toml").unlink()
    (problem,) = check_lock(folder).problems
    assert problem.kind == "missing" and "restore the file" in problem.message
    with pytest.raises(ConfigError, match="answer@v1 has no file"):
        PromptRegistry(folder)


def test_a_new_version_is_a_draft_until_locked_and_locking_only_adds(folder: Path) -> None:
    before = (folder / LOCK_FILE).read_text(encoding="utf-8")
    text = (
        (folder / "answer" / "v1.toml")
        .read_text(encoding="utf-8")
        .replace('version = "v1"', 'version = "v9"')
    )
    (folder / "answer" / "v9.toml").write_text(text, encoding="utf-8")

    registry = PromptRegistry(folder)
    assert not registry.entry("answer", "v9").released and registry.entry("answer", "v1").released
    assert check_lock(folder).drafts == (("answer", "v9"),)

    assert add_to_lock(folder) == [("answer", "v9")]
    after = (folder / LOCK_FILE).read_text(encoding="utf-8")
    kept = [line for line in before.splitlines() if line.startswith('"')]
    assert all(line in after.splitlines() for line in kept)  # every earlier entry, unchanged
    assert f'"v9" = "{content_hash((folder / "answer" / "v9.toml").read_bytes())}"' in after
    assert PromptRegistry(folder).entry("answer", "v9").released
    assert add_to_lock(folder) == []  # nothing new: nothing written


def test_a_checkout_with_crlf_line_endings_is_the_same_version(folder: Path) -> None:
    path = folder / "answer" / "v1.toml"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert not check_lock(folder).problems


def test_versions_with_dots_round_trip_through_the_lock(tmp_path: Path) -> None:
    (tmp_path / "answer").mkdir()
    text = (
        (PROMPTS / "answer" / "v1.toml")
        .read_text(encoding="utf-8")
        .replace('version = "v1"', 'version = "v1.1"')
    )
    (tmp_path / "answer" / "v1.1.toml").write_text(text, encoding="utf-8")
    assert add_to_lock(tmp_path) == [("answer", "v1.1")]
    assert PromptRegistry(tmp_path).entry("answer", "v1.1").released


def test_a_malformed_lock_is_a_config_error(folder: Path) -> None:
    (folder / LOCK_FILE).write_text('[answer]\nv1 = "md5:abc"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[answer\] must map versions to sha256"):
        PromptRegistry(folder)
    (folder / LOCK_FILE).write_text("[answer\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be read as TOML"):
        check_lock(folder)
