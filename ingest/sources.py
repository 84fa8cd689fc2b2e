"""Named sources: the name in front of every document path, and the one folder it stands for.

A source is a folder ingested under a name: ``kb ingest PATH --source NAME``, by default the
folder's own name. A document's path is that name plus the path inside the folder
(``docs/guide/install.md``): readable in answers, and the same whether the folder is given as
``docs``, ``./docs/`` or an absolute path. The store records on every chunk which resolved folder
its source name stands for, so one name never stands for two folders: another folder under a name
already in use is refused, instead of the two overwriting and pruning each other's documents.
A file or subfolder inside a folder the store knows belongs to that folder's source. A folder
that moved (a checkout moved or renamed) is re-bound to its name on request (``adopt``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from app.errors import KBError
from app.store import DocumentState

__all__ = [
    "Adoption",
    "Root",
    "SourceError",
    "SourcePlan",
    "check_sources",
    "document_path",
    "known_folders",
    "resolve_roots",
    "source_of",
    "valid_source_name",
]

_MAX_NAME_CHARS = 200


class SourceError(KBError):
    """A source name that cannot be used, or one that already stands for another folder."""

    code = "source_error"


@dataclass(frozen=True, slots=True)
class Root:
    """One path given to a run, as the named source it belongs to."""

    name: str
    """The source name: the first part of every document path of this source."""
    folder: Path
    """The resolved folder the name stands for."""
    part: Path | None = None
    """The resolved file or subfolder given, when it is narrower than the whole folder."""

    def document(self, path: Path) -> str:
        """The document path of a file under ``folder``."""
        return document_path(self.name, path.relative_to(self.folder).as_posix())

    def file_of(self, document: str) -> Path | None:
        """The file a document path of this source names, or None when it is outside this root."""
        name, _, relative = document.partition("/")
        if name != self.name or not relative:
            return None
        path = self.folder.joinpath(*PurePosixPath(relative).parts)
        if self.part is not None and path != self.part and self.part not in path.parents:
            return None
        return path

    def covers(self, other: Root) -> bool:
        """Whether every file of ``other`` is a file of this root too."""
        if (other.name, other.folder) != (self.name, self.folder):
            return False
        if self.part is None:
            return True
        return other.part is not None and (other.part == self.part or self.part in other.part.parents)


def document_path(name: str, relative: str) -> str:
    """``("docs", "guide/install.md")`` → ``"docs/guide/install.md"``.

    Source names never contain ``/``, so the first part of a path always is its source name and
    two sources can never produce the same path.
    """
    return f"{name}/{relative}"


def source_of(state: DocumentState) -> str:
    """The source name a stored document belongs to (for documents written before names were
    recorded: the first part of its path, which is what the name was then)."""
    if state.source_name is not None:
        return state.source_name
    return state.source.partition("/")[0]


def valid_source_name(name: str, *, given: str = "") -> str:
    """``name`` if it can name a source, else ``SourceError`` saying why."""
    where = f" (for {given})" if given else ""
    if not name.strip():
        raise SourceError(f"a source needs a name{where}: give it one with --source NAME")
    problem = ""
    if name != name.strip():
        problem = "must not start or end with spaces"
    elif "/" in name or "\\" in name:
        problem = "must not contain / or \\ (it is the first part of every document path)"
    elif name in (".", ".."):
        problem = "must not be . or .."
    elif len(name) > _MAX_NAME_CHARS:
        problem = f"must be at most {_MAX_NAME_CHARS} characters"
    elif not name.isprintable():
        problem = "must not contain control characters"
    if problem:
        raise SourceError(f"source name {name!r}{where} {problem}; choose another with --source NAME")
    return name


def resolve_roots(
    paths: Sequence[Path], *, source: str | None = None, known: Mapping[str, Path] | None = None
) -> tuple[list[Root], list[str]]:
    """The roots of a run (each once) and the paths that do not exist.

    ``known`` maps the source names the store records to their folders. A path that is such a
    folder, or lies inside one, belongs to that source (the closest one), so updating one file or
    subfolder of ``docs`` updates ``docs/...`` and a folder ingested under a chosen name keeps it.
    Any other folder is a new source named after itself, and any other file one named after its
    folder. ``source`` gives the name instead; every path is then ingested under it, so they must
    lie in that source's folder. Two folders under one name are refused.
    """
    known = known or {}
    roots: list[Root] = []
    missing: list[str] = []
    for given in paths:
        if not given.exists():
            missing.append(str(given))
            continue
        root = _root_of(given, source=source, known=known)
        if root not in roots:
            roots.append(root)
    # A root whose files another root of the run includes adds nothing (a file given with its folder).
    roots = [r for r in roots if not any(o != r and o.covers(r) for o in roots)]
    folders: dict[str, Path] = {}
    for root in roots:
        first = folders.setdefault(root.name, root.folder)
        if first != root.folder:
            raise SourceError(
                f"{first} and {root.folder} would both be source {root.name!r}, and their documents "
                f"would overwrite each other. Ingest one of them on its own under another name: "
                f"kb ingest {root.folder} --source NAME"
            )
    return roots, missing


def _root_of(given: Path, *, source: str | None, known: Mapping[str, Path]) -> Root:
    resolved = given.resolve()
    candidates = [(name, folder) for name, folder in known.items() if source is None or name == source]
    containing = [
        (name, folder) for name, folder in candidates if folder == resolved or folder in resolved.parents
    ]
    if containing:
        name, folder = max(containing, key=lambda known_source: len(known_source[1].parts))
        return Root(name=name, folder=folder, part=None if folder == resolved else resolved)
    if resolved.is_file():
        folder, part = resolved.parent, resolved
    else:
        folder, part = resolved, None
    name = valid_source_name(folder.name if source is None else source, given=str(given))
    return Root(name=name, folder=folder, part=part)


def known_folders(states: Mapping[str, DocumentState]) -> dict[str, Path]:
    """Source name → the folder the store records for it (names recorded for one folder only)."""
    folders: dict[str, set[str]] = {}
    for state in states.values():
        if state.source_name and state.source_root:
            folders.setdefault(state.source_name, set()).add(state.source_root)
    return {name: Path(next(iter(roots))) for name, roots in folders.items() if len(roots) == 1}


@dataclass(frozen=True, slots=True)
class Adoption:
    """Stored documents of a source to re-bind to the folder given in this run."""

    name: str
    folder: Path
    doc_ids: list[str]
    previous: list[str]
    """The folders the name stood for until now; empty for documents written before names were
    recorded."""


@dataclass(slots=True)
class SourcePlan:
    adoptions: list[Adoption] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    """Paths of stored documents, outside this run's sources, written before folders were
    recorded."""


def check_sources(
    roots: Sequence[Root], states: Mapping[str, DocumentState], *, adopt: bool = False
) -> SourcePlan:
    """Check each root's name against the folder the store records for it.

    A name the store does not know, or knows for the same folder, is fine. A name recorded for
    another folder, or held by documents written before folders were recorded, is refused with a
    ``SourceError`` saying what to do, unless ``adopt`` says this folder is now the one: then the
    plan lists the documents to re-bind (their content is unchanged; nothing is re-embedded).
    """
    folders = {root.name: root.folder for root in roots}
    recorded: dict[str, dict[str, list[str]]] = {}  # name → folder → doc ids
    plan = SourcePlan()
    for doc_id, state in states.items():
        name = source_of(state)
        if name not in folders:
            if state.source_root is None:
                plan.unrecorded.append(state.source)
            continue
        stored = state.source_root if state.source_root is not None else ""
        recorded.setdefault(name, {}).setdefault(stored, []).append(doc_id)
    for name, folder in folders.items():
        others = {f: ids for f, ids in recorded.get(name, {}).items() if f != str(folder)}
        if not others:
            continue
        previous = sorted(f for f in others if f)
        if not adopt:
            raise SourceError(_conflict(name, folder, previous, unrecorded=len(others.get("", []))))
        plan.adoptions.append(
            Adoption(
                name=name,
                folder=folder,
                doc_ids=sorted(i for ids in others.values() for i in ids),
                previous=previous,
            )
        )
    plan.unrecorded.sort()
    return plan


def _conflict(name: str, folder: Path, previous: list[str], *, unrecorded: int) -> str:
    keep_both = (
        f"To keep both, ingest this folder under another name: kb ingest {folder} --source NAME "
        "(its documents are then NAME/...)."
    )
    if previous:
        return (
            f"source {name!r} is the folder {' and '.join(previous)}, not {folder}; ingesting it "
            f"under the same name would overwrite and prune that folder's documents. {keep_both} "
            f"If the folder moved to {folder}, run again with --adopt (unchanged documents are "
            "kept, nothing is re-embedded)."
        )
    return (
        f"the store holds {unrecorded} document(s) under {name}/ written by an older kb, which did "
        f"not record which folder they came from. If they came from {folder}, run again with "
        f"--adopt (unchanged documents are kept, nothing is re-embedded). {keep_both}"
    )
