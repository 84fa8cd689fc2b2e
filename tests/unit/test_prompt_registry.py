"""Loading prompt versions: the folder layout, the two kinds of version file, and every load error
named with its file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from app.errors import ConfigError
from app.prompting import PromptRegistry

pytestmark = pytest.mark.unit


def valid_template(version: str = "v9") -> dict[str, Any]:
    return {
        "version": version,
        "description": "test",
        "system": "Answer from documents.",
        "user": "{status_block}\n\n{documents}\n\nQ: {question}",
        "document": '<document index="{index}">\n{text}\n</document>',
        "status": {"ok": "OK {count}", "empty": "EMPTY", "timeout": "TIMEOUT", "error": "ERROR"},
    }


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """A tiny TOML writer for flat tables of strings and numbers (JSON scalars are TOML scalars)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    top = [f"{k} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [
        f"[{k}]\n" + "\n".join(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())
        for k, v in data.items()
        if isinstance(v, dict)
    ]
    path.write_text("\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n", encoding="utf-8")
    return path


def test_a_valid_template_directory_loads_every_version_in_natural_order(tmp_path: Path) -> None:
    for version in ("v10", "v2", "v1"):
        write_toml(tmp_path / "answer" / f"{version}.toml", valid_template(version))
    registry = PromptRegistry(tmp_path)
    assert registry.versions("answer") == ["v1", "v2", "v10"]
    assert registry.answer("v2").version == "v2"
    assert registry.versions("condense") == [] and not registry.has("condense", "v1")
    # Nothing is locked in a fresh folder: every version is a draft.
    assert not any(registry.entry("answer", v).released for v in registry.versions("answer"))


def test_model_parameters_are_optional_and_bounded(tmp_path: Path) -> None:
    write_toml(tmp_path / "answer" / "v1.toml", valid_template("v1"))
    write_toml(
        tmp_path / "answer" / "v2.toml",
        {**valid_template("v2"), "parameters": {"temperature": 0.7, "max_tokens": 300}},
    )
    registry = PromptRegistry(tmp_path)
    plain, tuned = registry.answer("v1").parameters, registry.answer("v2").parameters
    assert (plain.temperature, plain.max_tokens) == (None, None)
    assert plain.temperature_or(0.2) == 0.2 and plain.output_tokens(1024) == 1024
    assert tuned.temperature_or(0.2) == 0.7
    assert tuned.output_tokens(1024) == 300 and tuned.output_tokens(100) == 100  # never over the ceiling

    write_toml(tmp_path / "answer" / "v3.toml", {**valid_template("v3"), "parameters": {"temperature": 3}})
    with pytest.raises(ConfigError, match="v3.toml"):
        PromptRegistry(tmp_path)


def test_an_unknown_version_lists_the_available_ones(tmp_path: Path) -> None:
    write_toml(tmp_path / "answer" / "v9.toml", valid_template())
    registry = PromptRegistry(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown prompt version 'v3' of 'answer'.*v9"):
        registry.answer("v3")
    with pytest.raises(ConfigError, match=r"unknown prompt 'condense'.*answer"):
        registry.condense("v1")


def broken(mutate: Any) -> dict[str, Any]:
    data = valid_template()
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (broken(lambda d: d["status"].pop("timeout")), "timeout"),
        (broken(lambda d: d.pop("system")), "system"),
        (broken(lambda d: d.update(extra="x")), "extra"),
        (
            broken(lambda d: d.update(user="{status_block} {documents}")),
            r"`user` lacks required placeholder\(s\) \{question\}",
        ),
        (
            broken(lambda d: d.update(document="{index} {txt}")),
            r"`document` has unknown placeholder\(s\) \{txt\}",
        ),
        (
            broken(lambda d: d["status"].update(empty="{count} found")),
            r"`status.empty` has unknown placeholder",
        ),
        (broken(lambda d: d.update(system="")), "system"),
        (broken(lambda d: d.update(version="v8")), "does not match the file name"),
        (broken(lambda d: d.update(parameters={"top_p": 0.5})), "top_p"),
    ],
    ids=[
        "missing-status",
        "missing-system",
        "unknown-key",
        "missing-placeholder",
        "unknown-placeholder",
        "status-placeholder",
        "empty-system",
        "version-mismatch",
        "unknown-parameter",
    ],
)
def test_a_malformed_template_names_the_file_and_the_problem(
    tmp_path: Path, data: dict[str, Any], problem: str
) -> None:
    write_toml(tmp_path / "answer" / "v1.toml", valid_template("v1"))
    bad = write_toml(tmp_path / "answer" / "v9.toml", data)
    with pytest.raises(ConfigError) as info:
        PromptRegistry(tmp_path)
    assert str(bad) in info.value.message
    assert re.search(problem, info.value.message)


def valid_condense(version: str = "v1") -> dict[str, Any]:
    return {
        "version": version,
        "description": "test",
        "system": "Rewrite.",
        "user": "{history}\n\n{question}",
        "turn": "Q: {question}\nA: {answer}",
    }


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({**valid_condense(), "user": "{question}"}, r"`user` lacks required placeholder\(s\) \{history\}"),
        ({**valid_condense(), "turn": "{question} {documents}"}, r"`turn` has unknown placeholder"),
        ({**valid_condense(), "document": "{text}"}, "document"),  # an answer field in a condense file
    ],
    ids=["missing-history", "unknown-placeholder", "answer-field"],
)
def test_a_condense_version_is_read_as_a_condense_prompt(
    tmp_path: Path, data: dict[str, Any], problem: str
) -> None:
    write_toml(tmp_path / "answer" / "v1.toml", valid_template("v1"))
    write_toml(tmp_path / "condense" / "v2.toml", valid_condense("v2"))
    assert PromptRegistry(tmp_path).condense("v2").turn.startswith("Q:")
    bad = write_toml(tmp_path / "condense" / "v1.toml", data)
    with pytest.raises(ConfigError) as info:
        PromptRegistry(tmp_path)
    assert str(bad) in info.value.message and re.search(problem, info.value.message)


def test_a_folder_that_names_no_known_prompt_is_refused(tmp_path: Path) -> None:
    write_toml(tmp_path / "answer" / "v1.toml", valid_template("v1"))
    write_toml(tmp_path / "summary" / "v1.toml", valid_template("v1"))
    with pytest.raises(ConfigError, match=r"unknown prompt 'summary' \(known: answer, condense\)"):
        PromptRegistry(tmp_path)


def test_the_old_flat_layout_says_where_versions_go_now(tmp_path: Path) -> None:
    write_toml(tmp_path / "v1.toml", valid_template("v1"))
    with pytest.raises(ConfigError, match=r"v1.toml.*not in a prompt's folder.*answer/v1.toml"):
        PromptRegistry(tmp_path)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "answer" / "v1.toml"
    bad.parent.mkdir()
    bad.write_text('version = "v1\nsystem = ', encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        PromptRegistry(tmp_path)


def test_a_missing_or_empty_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        PromptRegistry(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no prompt templates"):
        PromptRegistry(tmp_path)
