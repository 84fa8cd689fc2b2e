"""Finding the files of an ingestion run and naming them stably."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["DiscoveredFile", "Discovery", "discover", "source_name"]


@dataclass(frozen=True, slots=True)
class DiscoveredFile:
    path: Path
    """Where the file is on disk."""
    source: str
    """Stable name: the root folder's name plus the path inside it (``docs/guide/install.md``)."""


@dataclass(slots=True)
class Discovery:
    files: list[DiscoveredFile]
    unsupported: list[str]
    """Sources skipped because their type is not supported."""
    missing_roots: list[str]


def source_name(root: Path, path: Path) -> str:
    """Name a file by its root folder's name and its path inside the root.

    Absolute paths would change when a checkout moves; paths relative to the working directory
    would change with it. The root's own name keeps ``kb ingest docs`` and ``kb ingest ./docs/``
    (and the same folder elsewhere) naming documents the same way.
    """
    root = root.resolve()
    path = path.resolve()
    if root.is_file():
        return root.name
    return str(PurePosixPath(root.name) / PurePosixPath(path.relative_to(root).as_posix()))


def _matches(relative: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if fnmatch.fnmatchcase(relative, pattern):
            return True
        # "**/x" should also match "x" at the top level.
        if pattern.startswith("**/") and fnmatch.fnmatchcase(relative, pattern[3:]):
            return True
    return False


def discover(
    roots: Sequence[Path], *, include: Sequence[str], exclude: Sequence[str], supported: Iterable[str]
) -> Discovery:
    """Files under ``roots`` (recursively) that pass the globs, sorted, each once."""
    suffixes = {s.lower() for s in supported}
    files: dict[Path, DiscoveredFile] = {}
    unsupported: list[str] = []
    missing: list[str] = []
    for root in roots:
        if not root.exists():
            missing.append(str(root))
            continue
        root = root.resolve()
        candidates = [root] if root.is_file() else _walk(root)
        for path in candidates:
            relative = path.name if root.is_file() else path.relative_to(root).as_posix()
            if not _matches(relative, include) or _matches(relative, exclude):
                continue
            source = source_name(root, path)
            if path.suffix.lower() not in suffixes:
                unsupported.append(source)
                continue
            files.setdefault(path, DiscoveredFile(path=path, source=source))
    return Discovery(
        files=sorted(files.values(), key=lambda f: f.source),
        unsupported=sorted(unsupported),
        missing_roots=missing,
    )


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(directory) / name for name in sorted(filenames) if not name.startswith("."))
    return found
