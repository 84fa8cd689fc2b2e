"""Build the prompt: versioned TOML templates, documents fenced as data, status in plain words.

A template (``prompts/<version>.toml``) has ``version``, ``description``, ``system``, ``user``,
``document`` and a ``[status]`` table with one wording per retrieval status. Placeholders are
``{name}``; each field accepts a fixed set (checked at load time, so a typo fails at start-up,
not on the first question). Substitution is one pass over the template: values, which include
retrieved text and the user's question, are never parsed for placeholders themselves.

Retrieved text is fenced in ``<documents>``/``<document>`` tags that the system prompt declares
to be data. Anything in a value that could open or close those tags is neutralised, so a
document cannot end its fence early and smuggle in instructions or a fake source.
"""

from __future__ import annotations

import html
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from app.errors import ConfigError
from app.records import RetrievalStatus, ScoredChunk

__all__ = [
    "Message",
    "Prompt",
    "PromptRegistry",
    "PromptTemplate",
    "StatusWording",
    "build_prompt",
    "document_overhead",
    "render_documents",
]

_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")
# Opening or closing document(s) tags, with the spacing and case variants a model would still
# read as a tag, and the full-width/small "<" look-alikes.
_FENCE_TAG_RE = re.compile(r"[<\uff1c\ufe64](\s*/?\s*documents?\b)", re.IGNORECASE)
_DOCUMENTS_OPEN, _DOCUMENTS_CLOSE = "<documents>", "</documents>"
_SEPARATOR = "\n\n"

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

# field -> (allowed placeholders, required placeholders)
_PLACEHOLDERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "system": (frozenset(), frozenset()),
    "user": (frozenset({"status_block", "documents", "question"}),) * 2,
    "document": (
        frozenset({"index", "title", "source", "heading", "page", "text"}),
        frozenset({"index", "text"}),
    ),
    "status.ok": (frozenset({"count"}), frozenset()),
    "status.empty": (frozenset(), frozenset()),
    "status.timeout": (frozenset(), frozenset()),
    "status.error": (frozenset(), frozenset()),
}


class Message(msgspec.Struct, frozen=True):
    role: Literal["user", "assistant"]
    content: str


class Prompt(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered prompt plus the structured inputs it was rendered from."""

    version: str
    """Template version that produced it, e.g. "v1"."""

    system: str
    messages: tuple[Message, ...]
    question: str
    retrieval_status: RetrievalStatus
    context: tuple[ScoredChunk, ...] = ()
    """Chunks in the prompt, in order; source number n is ``context[n - 1]``."""


class StatusWording(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the model is told about retrieval, one wording per ``RetrievalStatus``."""

    ok: NonEmpty
    empty: NonEmpty
    timeout: NonEmpty
    error: NonEmpty


class PromptTemplate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One prompt version, as loaded from ``prompts/<version>.toml``."""

    version: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
    description: str
    system: NonEmpty
    user: NonEmpty
    document: NonEmpty
    status: StatusWording

    def __post_init__(self) -> None:
        # Raised as ValueError so that msgspec.convert reports it as a ValidationError too.
        for field, (allowed, required) in _PLACEHOLDERS.items():
            obj: object = self
            for part in field.split("."):
                obj = getattr(obj, part)
            found = set(_PLACEHOLDER_RE.findall(str(obj)))
            if unknown := found - allowed:
                accepted = _braced(allowed) or "none"
                raise ValueError(
                    f"`{field}` has unknown placeholder(s) {_braced(unknown)} (accepted: {accepted})"
                )
            if missing := required - found:
                raise ValueError(f"`{field}` lacks required placeholder(s) {_braced(missing)}")


def _braced(names: set[str] | frozenset[str]) -> str:
    return ", ".join("{" + n + "}" for n in sorted(names))


class PromptRegistry:
    """Every template in a directory, loaded and validated once, at construction."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"prompt template directory {self.directory} does not exist")
        self._templates: dict[str, PromptTemplate] = {}
        for path in sorted(self.directory.glob("*.toml")):
            template = _load(path)
            self._templates[template.version] = template
        if not self._templates:
            raise ConfigError(f"no prompt templates (*.toml) in {self.directory}")

    def get(self, version: str) -> PromptTemplate:
        try:
            return self._templates[version]
        except KeyError:
            raise ConfigError(
                f"unknown prompt version {version!r}; available in {self.directory}: "
                + ", ".join(self.versions())
            ) from None

    def versions(self) -> list[str]:
        return sorted(self._templates, key=_natural_key)


def _load(path: Path) -> PromptTemplate:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"prompt template {path}: cannot be read as TOML: {exc}") from None
    try:
        template = msgspec.convert(data, PromptTemplate)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"prompt template {path}: {exc}") from None
    # The file name is the version, so a copied file cannot silently shadow another version.
    if template.version != path.stem:
        raise ConfigError(
            f"prompt template {path}: version {template.version!r} does not match the file name"
        )
    return template


def _natural_key(version: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def _substitute(template: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


def _fence_safe(text: str) -> str:
    """``text`` with every document(s) tag turned into inert text (``&lt;/document>``)."""
    return _FENCE_TAG_RE.sub(r"&lt;\1", text)


def _attribute(value: str) -> str:
    """A value safe inside a double-quoted attribute, on one line."""
    return html.escape(" ".join(value.split()), quote=True)


def _render_document(template: PromptTemplate, index: int, chunk: ScoredChunk) -> str:
    record = chunk.record
    return _substitute(
        template.document,
        {
            "index": str(index),
            "title": _attribute(record.title),
            "source": _attribute(record.source),
            "heading": _attribute(record.heading),
            "page": "" if record.page is None else str(record.page),
            "text": _fence_safe(record.text),
        },
    )


def render_documents(template: PromptTemplate, context: Sequence[ScoredChunk]) -> str:
    """The ``<documents>`` block for ``context``, numbered from 1; empty string for no context."""
    if not context:
        return ""
    body = _SEPARATOR.join(_render_document(template, i, c) for i, c in enumerate(context, start=1))
    return f"{_DOCUMENTS_OPEN}\n{body}\n{_DOCUMENTS_CLOSE}"


def document_overhead(
    template: PromptTemplate, chunks: Sequence[ScoredChunk], count: Callable[[str], int]
) -> int:
    """Tokens one source costs besides its text, for ``fit_to_budget(per_chunk_overhead=...)``.

    The largest over ``chunks`` (titles and headings differ), with the ``<documents>`` wrapper
    and separators charged to every source: a few tokens wasted, never an overrun. With a
    sub-additive ``count`` (``ClaudeTokenEstimate`` is), the rendered block then costs at most
    the sum of ``count(text) + overhead``; escaping a tag-like sequence in a text adds about one
    token per occurrence on top.
    """
    if not chunks:
        return 0
    wrapper = count(f"{_DOCUMENTS_OPEN}\n\n{_DOCUMENTS_CLOSE}{_SEPARATOR}")
    index = len(chunks)  # the widest number
    widest = 0
    for chunk in chunks:
        record = msgspec.structs.replace(chunk.record, text="")
        empty = msgspec.structs.replace(chunk, record=record)
        widest = max(widest, count(_render_document(template, index, empty)))
    return widest + wrapper


def build_prompt(
    template: PromptTemplate,
    *,
    question: str,
    status: RetrievalStatus,
    context: Sequence[ScoredChunk],
) -> Prompt:
    """Render ``template`` for one question.

    ``context`` is the final, budgeted list of chunks; source n is ``context[n - 1]``. Status
    "ok" with no context is rendered, and recorded in ``Prompt.retrieval_status``, as "empty":
    retrieval worked but nothing survived ranking, and the model must hear exactly that. Any
    other status with a non-empty context is a caller bug (those wordings say no documents are
    provided) and raises ``ValueError``.
    """
    if status != "ok" and context:
        raise ValueError(f"retrieval status {status!r} cannot come with {len(context)} context chunk(s)")
    effective: RetrievalStatus = "empty" if status == "ok" and not context else status
    wording = getattr(template.status, effective)
    status_block = _substitute(wording, {"count": str(len(context))})
    documents = render_documents(template, context)
    user = template.user
    if not documents:
        # Leave out the placeholder with the blank lines after it rather than an empty fence.
        user = re.sub(r"\{documents\}\s*", "", user)
    values = {
        "status_block": status_block,
        "documents": documents,
        "question": _fence_safe(question.strip()),
    }
    content = _substitute(user, values)
    return Prompt(
        version=template.version,
        system=template.system,
        messages=(Message("user", content.strip()),),
        question=question,
        retrieval_status=effective,
        context=tuple(context),
    )
