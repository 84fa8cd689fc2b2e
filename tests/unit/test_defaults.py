"""Defaults have one home, the settings structs: files only override, the docs quote the structs."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from app.resources import config_dir
from app.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted(config_dir(environ={}).glob("*.toml"))
# A row of the settings table: | `key` | `default` | meaning |
DOCS_ROW = re.compile(r"^\| `(?P<key>[a-z_.]+)` \| `(?P<value>[^`]*)` \|", re.MULTILINE)


def leaves(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def struct_default(dotted: str) -> Any:
    node: Any = Settings()
    for part in dotted.split("."):
        assert hasattr(node, part), f"{dotted} is not a setting"
        node = getattr(node, part)
    return node


def as_setting(value: Any) -> Any:
    """A file's value as the settings hold it: TOML arrays are tuples there."""
    return tuple(value) if isinstance(value, list) else value


def test_the_shipped_configuration_files_are_found() -> None:
    assert {path.name for path in CONFIG_FILES} >= {"default.toml", "production.toml", "test.toml"}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_a_configuration_file_only_sets_what_differs_from_the_struct_default(path: Path) -> None:
    restated = [
        key
        for key, value in leaves(tomllib.loads(path.read_text(encoding="utf-8")))
        if as_setting(value) == struct_default(key)
    ]
    assert restated == [], f"{path.name} restates defaults of app/settings.py: {restated}"


def test_the_shipped_default_file_sets_nothing() -> None:
    default = config_dir(environ={}) / "default.toml"
    assert tomllib.loads(default.read_text(encoding="utf-8")) == {}


def test_the_documented_defaults_are_the_struct_defaults() -> None:
    rows = DOCS_ROW.findall((ROOT / "docs" / "configuration.md").read_text(encoding="utf-8"))
    assert len(rows) >= 10, "the settings table of docs/configuration.md was not found"
    wrong = {}
    for key, shown in rows:
        try:
            documented = tomllib.loads(f"v = {shown}")["v"]
        except tomllib.TOMLDecodeError:
            documented = shown  # a bare string, such as ./data
        if as_setting(documented) != struct_default(key):
            wrong[key] = (shown, struct_default(key))
    assert wrong == {}, f"docs/configuration.md (documented, actual): {wrong}"
