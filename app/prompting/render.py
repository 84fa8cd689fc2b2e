"""Render a prompt version for one question: documents fenced as data, status in plain words.

Substitution is one pass over the template: values, which include retrieved text, earlier turns
and the user's question, are never parsed for placeholders themselves.

Retrieved text is fenced in ``<documents>``/``<document>`` tags that the system prompt declares
to be data; a condense prompt fences the earlier turns in ``<conversation>``. Anything in a
value that could open or close those tags is neutralised, so a document (or an earlier answer)
cannot end its fence early and smuggle in instructions or a fake source.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

import msgspec

from app.prompting.template import PLACEHOLDER_RE, CondenseTemplate, ModelParameters, PromptTemplate
from app.records import RetrievalStatus, ScoredChunk

__all__ = [
    "Exchange",
    "Message",
    "Prompt",
    "build_condense_prompt",
    "build_prompt",
    "document_overhead",
    "render_documents",
]

# Opening or closing tags of a fence, with the spacing and case variants a model would still
# read as a tag, and the full-width/small "<" look-alikes.
_DOCUMENT_TAG_RE = re.compile(r"[<\uff1c\ufe64](\s*/?\s*documents?\b)", re.IGNORECASE)
_CONVERSATION_TAG_RE = re.compile(r"[<\uff1c\ufe64](\s*/?\s*(?:conversation|documents?)\b)", re.IGNORECASE)
_DOCUMENTS_OPEN, _DOCUMENTS_CLOSE = "<documents>", "</documents>"
_SEPARATOR = "\n\n"


class Message(msgspec.Struct, frozen=True):
    role: Literal["user", "assistant"]
    content: str


class Prompt(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered prompt plus the structured inputs it was rendered from."""

    version: str
    """Version that produced it, e.g. "v1"."""

    system: str
    messages: tuple[Message, ...]
    question: str
    retrieval_status: RetrievalStatus
    """What retrieval found; a condense prompt, which has no retrieval, says ``empty``."""
    context: tuple[ScoredChunk, ...] = ()
    """Chunks in the prompt, in order; source number n is ``context[n - 1]``."""
    name: str = "answer"
    """The prompt it was rendered from (``answer``, ``condense``)."""
    parameters: ModelParameters = msgspec.field(default_factory=ModelParameters)
    """The version's model parameters, applied by the provider over ``generation`` settings."""


class Exchange(Protocol):
    """One earlier turn of a conversation, as a condense prompt shows it."""

    @property
    def question(self) -> str: ...

    @property
    def answer(self) -> str: ...


def _substitute(template: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


def _fence_safe(text: str, tags: re.Pattern[str] = _DOCUMENT_TAG_RE) -> str:
    """``text`` with every fence tag turned into inert text (``&lt;/document>``)."""
    return tags.sub(r"&lt;\1", text)


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
    name: str = "answer",
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
        name=name,
        parameters=template.parameters,
    )


def build_condense_prompt(
    template: CondenseTemplate,
    *,
    history: Sequence[Exchange],
    question: str,
    answer_chars: int = 600,
    name: str = "condense",
) -> Prompt:
    """Render a condense ``template``: ``history`` (oldest first) and the follow-up ``question``.

    Each earlier answer is cut to ``answer_chars`` characters (the question it answered says
    what it was about; its whole text would only cost tokens). The model's reply is the
    standalone question.
    """
    turns = []
    for turn in history:
        answer = " ".join(turn.answer.split())
        if len(answer) > answer_chars:
            answer = answer[:answer_chars].rsplit(" ", 1)[0] + " …"
        values = {
            "question": _fence_safe(" ".join(turn.question.split()), _CONVERSATION_TAG_RE),
            "answer": _fence_safe(answer, _CONVERSATION_TAG_RE),
        }
        turns.append(_substitute(template.turn, values))
    values = {
        "history": _SEPARATOR.join(turns),
        "question": _fence_safe(" ".join(question.split()), _CONVERSATION_TAG_RE),
    }
    return Prompt(
        version=template.version,
        system=template.system,
        messages=(Message("user", _substitute(template.user, values).strip()),),
        question=question,
        retrieval_status="empty",
        name=name,
        parameters=template.parameters,
    )
