"""What ``GET /admin/prompts`` and ``kb prompts list`` show: every prompt, its versions, where its
labels point (and since when, moved by whom), its experiments, pins and recent moves."""

from __future__ import annotations

import msgspec

from app.prompting.labels import LabelMove, PromptLabels
from app.prompting.template import ModelParameters

__all__ = ["ExperimentView", "LabelView", "PromptOverview", "PromptsOverview", "VersionView", "overview"]


class VersionView(msgspec.Struct, kw_only=True):
    version: str
    description: str
    hash: str
    """``sha256:<hex>`` of the version file."""
    released: bool
    """In ``prompts.lock``; a draft is not, and may still change."""
    parameters: ModelParameters
    """Model parameters the version asks for (unset: the ``generation`` settings)."""


class LabelView(msgspec.Struct, kw_only=True):
    label: str
    version: str
    """Where the label points now."""
    moved: bool
    """Moved at run time (in the state store); False: where the configuration puts it."""
    followed: bool
    """The label this environment answers with (``prompts.label``)."""
    by: str | None = None
    """Who moved it last (run-time positions only)."""
    at: str | None = None
    """When (ISO 8601, UTC)."""
    rollback_to: str | None = None
    """The version ``rollback`` would return it to; None: nothing to roll back to."""


class ExperimentView(msgspec.Struct, kw_only=True):
    name: str
    weights: dict[str, float]
    """Version -> percent of callers; the rest follow the label."""


class PromptOverview(msgspec.Struct, kw_only=True):
    name: str
    versions: list[VersionView]
    labels: list[LabelView]
    experiments: list[ExperimentView]
    pins: dict[str, str]
    """Tenant -> version."""
    moves: list[LabelMove]
    """The latest label moves, oldest first."""


class PromptsOverview(msgspec.Struct, kw_only=True):
    label: str
    """The label this environment follows."""
    refresh_s: float
    """How soon every instance follows a moved label."""
    prompts: list[PromptOverview]


async def overview(labels: PromptLabels) -> PromptsOverview:
    """Read now from the state store (``StateUnavailableError`` when it is down)."""
    settings, registry = labels.settings, labels.registry
    prompts = []
    for name in registry.names():
        positions = await labels.positions(name)
        label_views = []
        for label in labels.labels(name, positions):
            position = positions.get(label)
            moved = position is not None and registry.has(name, position.version)
            back = [v for v in (position.back if position else ()) if registry.has(name, v)]
            label_views.append(
                LabelView(
                    label=label,
                    version=labels.current(name, label, positions) or "",
                    moved=moved,
                    followed=label == settings.label,
                    by=position.by if position and moved else None,
                    at=position.at if position and moved else None,
                    rollback_to=back[-1] if moved and back else None,
                )
            )
        prompts.append(
            PromptOverview(
                name=name,
                versions=[
                    VersionView(
                        version=entry.version,
                        description=entry.description,
                        hash=entry.hash,
                        released=entry.released,
                        parameters=entry.parameters,
                    )
                    for entry in (registry.entry(name, v) for v in registry.versions(name))
                ],
                labels=label_views,
                experiments=[
                    ExperimentView(name=experiment_name, weights=dict(experiment.weights))
                    for experiment_name, experiment in sorted(settings.experiments.items())
                    if experiment.prompt == name
                ],
                pins=dict(sorted(settings.pins.get(name, {}).items())),
                moves=await labels.history(name),
            )
        )
    return PromptsOverview(label=settings.label, refresh_s=settings.refresh_s, prompts=prompts)
