"""The lock file: the content hash of every released prompt version.

A released version never changes, so that ``name@version`` in a log line, a done event or a
feedback record always means the same text. ``prompts/prompts.lock`` holds one hash per
released version; ``kb prompts lock`` adds the versions not in it yet and never changes an
entry. A version file whose hash differs from its entry was edited in place: the registry
refuses to load it, the lock test fails, and the fix is to restore it and add a new version.
A version that is not in the lock yet is a draft.

The hash is SHA-256 of the file's bytes with line endings normalised (a checkout with CRLF
line endings is the same version), so even a comment counts: the file is the version.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.errors import ConfigError

__all__ = [
    "LOCK_FILE",
    "LockProblem",
    "LockReport",
    "add_to_lock",
    "check_lock",
    "content_hash",
    "natural_key",
    "read_lock",
    "version_files",
]

LOCK_FILE = "prompts.lock"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEADER = """\
# Content hashes of the released prompt versions (docs/prompts.md).
# `kb prompts lock` adds new versions and never changes an entry. A released version is
# immutable: to change a prompt, add a new version file (prompts/<name>/<version>.toml) and lock it.
"""

Lock = dict[str, dict[str, str]]
"""Prompt name -> version -> content hash."""


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def natural_key(version: str) -> list[int | str]:
    """``v2`` before ``v10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def version_files(directory: Path) -> dict[str, dict[str, Path]]:
    """Prompt name -> version -> file, for every ``<name>/<version>.toml`` under ``directory``."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(directory.glob("*/*.toml")):
        found.setdefault(path.parent.name, {})[path.stem] = path
    return found


def read_lock(directory: Path) -> Lock:
    """The lock of ``directory``; empty when there is no lock file (every version is a draft)."""
    path = directory / LOCK_FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"prompt lock {path}: cannot be read as TOML: {exc}") from None
    lock: Lock = {}
    for name, versions in data.items():
        if not isinstance(versions, dict) or not all(
            isinstance(h, str) and _HASH_RE.match(h) for h in versions.values()
        ):
            raise ConfigError(f"prompt lock {path}: [{name}] must map versions to sha256:<hex> hashes")
        lock[name] = dict(versions)
    return lock


@dataclass(frozen=True, slots=True)
class LockProblem:
    name: str
    version: str
    kind: Literal["edited", "missing"]

    @property
    def message(self) -> str:
        ref = f"{self.name}@{self.version}"
        if self.kind == "missing":
            return (
                f"released prompt {ref} has no file {self.name}/{self.version}.toml: a released version "
                "stays available (labels and rollbacks may point at it); restore the file"
            )
        return (
            f"released prompt {ref} was edited in place (its content hash differs from {LOCK_FILE}). "
            f"A released version never changes: restore {self.name}/{self.version}.toml "
            f"(git checkout -- prompts/{self.name}/{self.version}.toml), put the change in a new "
            f"version file such as prompts/{self.name}/<next version>.toml, and run `kb prompts lock`"
        )


@dataclass(frozen=True, slots=True)
class LockReport:
    """How a prompt folder compares with its lock."""

    hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    """(name, version) -> content hash of every version file."""
    released: frozenset[tuple[str, str]] = frozenset()
    drafts: tuple[tuple[str, str], ...] = ()
    """Versions not in the lock yet."""
    problems: tuple[LockProblem, ...] = ()


def check_lock(directory: Path) -> LockReport:
    """Compare every version file with the lock; never changes anything."""
    lock = read_lock(directory)
    hashes = {
        (name, version): content_hash(path.read_bytes())
        for name, versions in version_files(directory).items()
        for version, path in versions.items()
    }
    problems: list[LockProblem] = []
    released: set[tuple[str, str]] = set()
    for name, versions in sorted(lock.items()):
        for version, locked in sorted(versions.items(), key=lambda item: natural_key(item[0])):
            actual = hashes.get((name, version))
            if actual is None:
                problems.append(LockProblem(name, version, "missing"))
            elif actual != locked:
                problems.append(LockProblem(name, version, "edited"))
            else:
                released.add((name, version))
    drafts = tuple(
        sorted(
            (key for key in hashes if key[1] not in lock.get(key[0], {})),
            key=lambda key: (key[0], natural_key(key[1])),
        )
    )
    return LockReport(hashes=hashes, released=frozenset(released), drafts=drafts, problems=tuple(problems))


def add_to_lock(directory: Path) -> list[tuple[str, str]]:
    """Release the drafts: add their hashes to the lock; the (name, version) pairs added.

    Existing entries are kept exactly; a folder with an edited or missing released version is
    refused (``ConfigError``) and the lock is left as it was.
    """
    report = check_lock(directory)
    if report.problems:
        raise ConfigError("; ".join(problem.message for problem in report.problems))
    for name, _ in report.drafts:
        if not _NAME_RE.match(name):
            raise ConfigError(f"prompt name {name!r} must be lowercase letters, digits, - or _")
    if not report.drafts:
        return []
    lock = read_lock(directory)
    for name, version in report.drafts:
        lock.setdefault(name, {})[version] = report.hashes[(name, version)]
    (directory / LOCK_FILE).write_text(_render(lock), encoding="utf-8")
    return list(report.drafts)


def _render(lock: Lock) -> str:
    tables = []
    for name in sorted(lock):
        rows = [f'"{version}" = "{lock[name][version]}"' for version in sorted(lock[name], key=natural_key)]
        tables.append(f"[{name}]\n" + "\n".join(rows))
    return _HEADER + "\n" + "\n\n".join(tables) + "\n"
