"""Prompts: named, versioned files; rendering; the lock of released versions; which version answers.

* ``template`` — what a version file holds (``PromptTemplate`` for ``answer``, ``CondenseTemplate``
  for ``condense``, their ``ModelParameters``), validated at load;
* ``render`` — a version rendered for one question (``build_prompt``, ``build_condense_prompt``):
  documents fenced as data, retrieval status in plain words;
* ``lock`` — content hashes of released versions (``prompts/prompts.lock``);
* ``registry`` — every version of a folder (``PromptRegistry``): ``registry.answer("v1")``,
  ``registry.condense("v1")``, ``registry.get(name, version)``;
* ``selection`` — the pure choice of a version for a caller (override, pin, experiment, label);
* ``labels`` / ``selector`` — label positions moved at run time in the state store, and the
  per-process ``PromptSelection`` that follows them.

docs/prompts.md describes the layout and how to release, promote and roll back a version.
"""

from __future__ import annotations

from app.prompting.labels import LabelMove, LabelPosition, PromptLabels
from app.prompting.lock import LOCK_FILE, LockProblem, LockReport, add_to_lock, check_lock, content_hash
from app.prompting.registry import PromptRegistry, PromptVersion
from app.prompting.render import (
    Exchange,
    Message,
    Prompt,
    build_condense_prompt,
    build_prompt,
    document_overhead,
    render_documents,
)
from app.prompting.selection import Decision, bucket, check_settings, choose, parse_override
from app.prompting.selector import PromptSelection, Selected
from app.prompting.template import (
    AnyTemplate,
    CondenseTemplate,
    ModelParameters,
    PromptTemplate,
    StatusWording,
)

__all__ = [
    "LOCK_FILE",
    "AnyTemplate",
    "CondenseTemplate",
    "Decision",
    "Exchange",
    "LabelMove",
    "LabelPosition",
    "LockProblem",
    "LockReport",
    "Message",
    "ModelParameters",
    "Prompt",
    "PromptLabels",
    "PromptRegistry",
    "PromptSelection",
    "PromptTemplate",
    "PromptVersion",
    "Selected",
    "StatusWording",
    "add_to_lock",
    "bucket",
    "build_condense_prompt",
    "build_prompt",
    "check_lock",
    "check_settings",
    "choose",
    "content_hash",
    "document_overhead",
    "parse_override",
    "render_documents",
]
