"""Settings of the prompt stage (``app.prompting``): where versions live and which one answers.

Which version answers a request (``app.prompting.selection``), first match wins: an admin's
override header, a tenant pin (``pins``), an experiment (``experiments``), the label this
environment follows (``label``: where it was moved at run time, else ``labels``), else the
prompt's configured ``version``. docs/prompts.md explains each with examples.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from app.settings.base import _Section

__all__ = ["LabelName", "PromptExperiment", "PromptName", "PromptSettings", "VersionName"]

PromptName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
"""A prompt's folder under ``prompts/`` (``answer``, ``condense``)."""
LabelName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
"""A label (``production``, ``staging``)."""
VersionName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
"""A version: a file name under ``prompts/<name>/`` without ``.toml``."""
_TenantName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_ExperimentName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_Percent = Annotated[float, Meta(gt=0.0, le=100.0)]


class PromptExperiment(_Section, frozen=True, kw_only=True):
    """Traffic split between versions of one prompt, by a stable hash of the caller."""

    prompt: PromptName = "answer"
    """The prompt whose versions are compared."""

    weights: dict[VersionName, _Percent]
    """Version -> percent of callers (by API key; by address for anonymous callers) that get it.
    The percentages add up to at most 100; the callers left follow the label, so
    ``{v2 = 10}`` sends a tenth of the traffic to v2 and the rest wherever the label points.
    A caller keeps its version for as long as the experiment keeps its name and weights."""

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("an experiment needs at least one version in `weights`")
        if sum(self.weights.values()) > 100.0 + 1e-9:
            raise ValueError(f"experiment weights add up to {sum(self.weights.values())}, more than 100")


class PromptSettings(_Section, frozen=True):
    directory: str | None = None
    """Folder of versioned prompt templates; a relative path is taken from the working directory.
    Unset: ``KB_PROMPTS_DIR``, else the templates installed with the package, else the source
    tree's ``prompts/`` (``app.resources``)."""

    version: VersionName = "v1"
    """Version of the ``answer`` prompt that a label points at when ``labels`` does not name one
    and it was not moved at run time."""

    condense_version: VersionName = "v1"
    """The same for the ``condense`` prompt (a follow-up made standalone)."""

    label: LabelName = "production"
    """The label this environment follows: the version it points at answers (unless a pin, an
    experiment or an admin's override header chooses another)."""

    labels: dict[PromptName, dict[LabelName, VersionName]] = msgspec.field(default_factory=dict)
    """Prompt -> label -> version: where each label points until it is moved at run time
    (``POST /admin/prompts/{name}/labels/{label}``, ``kb prompts promote``). A move is kept in the
    state store and wins over this until ``kb prompts reset``. Example:
    ``[prompts.labels.answer]`` with ``production = "v1"`` and ``staging = "v2"``."""

    pins: dict[PromptName, dict[_TenantName, VersionName]] = msgspec.field(default_factory=dict)
    """Prompt -> tenant -> version: every caller of that tenant gets that version, whatever the
    label or an experiment says (``[prompts.pins.answer]`` with ``legal = "v1"``)."""

    experiments: dict[_ExperimentName, PromptExperiment] = msgspec.field(default_factory=dict)
    """Experiment name -> split (``[prompts.experiments.terse-v2]`` with ``weights = {v2 = 10}``).
    The name is part of the hash: renaming an experiment reshuffles who gets which version. Several
    experiments of one prompt are tried in name order; the first that assigns a version wins."""

    refresh_s: Annotated[float, Meta(gt=0.0, le=300.0)] = 2.0
    """How long an instance uses the label positions it read from the state store before reading
    them again: a label moved on one instance is followed by every other within this time. While
    the state store is down, the last positions read (else the configured ones) keep answering."""

    history: Annotated[int, Meta(ge=1, le=1000)] = 20
    """Earlier positions kept per label for ``rollback``, and moves kept per prompt for the
    listing of who moved what when."""
