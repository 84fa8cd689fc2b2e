"""Finding the files of an ingestion run and naming them by their source (``ingest.sources``)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.sources import Root

__all__ = ["DiscoveredFile", "Discovery", "discover"]


@dataclass(frozen=True, slots=True)
class DiscoveredFile:
    path: Path
    """Where the file is on disk."""
    source: str
    """Its document path: the source name plus the path inside the folder (``docs/guide/install.md``)."""
    root: Root
    """The root it was found under."""


@dataclass(slots=True)
class Discovery:
    files: list[DiscoveredFile]
    unsupported: list[str]
    """Document paths skipped because their type is not supported."""


def _matches(relative: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if fnmatch.fnmatchcase(relative, pattern):
            return True
        # "**/x" should also match "x" at the top level.
        if pattern.startswith("**/") and fnmatch.fnmatchcase(relative, pattern[3:]):
            return True
    return False


def discover(
    roots: Sequence[Root], *, include: Sequence[str], exclude: Sequence[str], supported: Iterable[str]
) -> Discovery:
    """Files of ``roots`` (folders recursively) that pass the globs, sorted, each file once."""
    suffixes = {s.lower() for s in supported}
    files: dict[Path, DiscoveredFile] = {}
    unsupported: list[str] = []
    for root in roots:
        if root.part is not None and root.part.is_file():
            # A file given by name is matched by its name, as if it sat at the top of a folder.
            candidates, relative_to = [root.part], root.part.parent
        else:
            # Globs match paths inside the source folder, so a subfolder selects what a run over
            # the whole folder would select there.
            candidates, relative_to = _walk(root.part or root.folder), root.folder
        for path in candidates:
            relative = path.relative_to(relative_to).as_posix()
            if not _matches(relative, include) or _matches(relative, exclude):
                continue
            source = root.document(path)
            if path.suffix.lower() not in suffixes:
                unsupported.append(source)
                continue
            files.setdefault(path, DiscoveredFile(path=path, source=source, root=root))
    return Discovery(
        files=sorted(files.values(), key=lambda f: f.source), unsupported=sorted(set(unsupported))
    )


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(directory) / name for name in sorted(filenames) if not name.startswith("."))
    return found
