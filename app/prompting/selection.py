"""Which version of a prompt answers one caller: a pure function of the caller, the settings and
where the label points now.

First match wins:

1. ``override``: a version an admin named in the request (``X-KB-Prompt-Version``:
   ``answer@v2`` or ``v2``); an unknown one is an ``InvalidRequestError`` (422, before streaming);
2. ``tenant:<tenant>``: the caller's tenant is pinned to a version (``prompts.pins``);
3. ``experiment:<name>``: the caller's stable bucket falls in a version's share of an
   experiment (``prompts.experiments``); the bucket is a hash of the experiment's name and the
   caller's subject (its API key, or its address when anonymous), so a caller keeps its version;
4. ``label:<label>``: the label this environment follows, where it was moved at run time, else
   where ``prompts.labels`` puts it;
5. ``default``: the prompt's configured version (``prompts.version`` for ``answer``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

import msgspec

from app.errors import ConfigError, InvalidRequestError
from app.prompting.lock import natural_key
from app.records import Caller
from app.settings import PromptSettings

__all__ = [
    "BUCKETS",
    "Decision",
    "bucket",
    "check_settings",
    "choose",
    "configured_version",
    "parse_override",
]

BUCKETS = 10_000
"""Experiment buckets: a share is resolved to a hundredth of a percent."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The version that answers, and why."""

    name: str
    version: str
    reason: str
    """``override``, ``tenant:<tenant>``, ``experiment:<name>``, ``label:<label>`` or ``default``."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def bucket(experiment: str, subject: str) -> int:
    """The caller's stable bucket in ``[0, BUCKETS)`` for one experiment."""
    digest = hashlib.sha256(f"{experiment}\0{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def fallback_version(settings: PromptSettings, name: str) -> str | None:
    """The version a prompt answers with when no label position is configured or moved."""
    return {"answer": settings.version, "condense": settings.condense_version}.get(name)


def configured_version(settings: PromptSettings, name: str, label: str) -> str | None:
    """Where the configuration puts ``label`` of prompt ``name``: ``labels``, else the fallback."""
    return settings.labels.get(name, {}).get(label) or fallback_version(settings, name)


def parse_override(value: str, name: str) -> str:
    """The version an override header names for prompt ``name`` (``answer@v2`` or ``v2``)."""
    text = value.strip()
    prompt, at, version = text.rpartition("@")
    if not at:
        prompt, version = name, text
    if not version:
        raise InvalidRequestError("the prompt version override names no version (send `answer@v2` or `v2`)")
    if prompt != name:
        raise InvalidRequestError(
            f"the prompt version override names prompt {prompt!r}; only {name!r} versions can be chosen here"
        )
    return version


def choose(
    name: str,
    *,
    caller: Caller,
    settings: PromptSettings,
    moved: str | None,
    known: Collection[str],
    override: str | None = None,
) -> Decision:
    """The version of prompt ``name`` that answers ``caller``.

    ``moved`` is where the environment's label was moved at run time (None: not moved, or not
    known); ``known`` are the versions that exist. Raises ``InvalidRequestError`` for an override
    naming an unknown version or another prompt.
    """
    if override is not None:
        version = parse_override(override, name)
        if version not in known:
            available = ", ".join(sorted(known, key=natural_key))
            raise InvalidRequestError(
                f"unknown prompt version {name}@{version} in the override; available: {available}"
            )
        return Decision(name=name, version=version, reason="override")

    pinned = settings.pins.get(name, {}).get(caller.tenant)
    if pinned is not None:
        return Decision(name=name, version=pinned, reason=f"tenant:{caller.tenant}")
    experimented = _experiment(name, caller, settings)
    if experimented is not None:
        return experimented

    label = settings.label
    if moved is not None and moved in known:
        return Decision(name=name, version=moved, reason=f"label:{label}")
    labelled = settings.labels.get(name, {}).get(label)
    if labelled is not None:
        return Decision(name=name, version=labelled, reason=f"label:{label}")
    fallback = fallback_version(settings, name)
    if fallback is None:
        raise ConfigError(f"prompt {name!r} has no configured version: set prompts.labels.{name}.{label}")
    return Decision(name=name, version=fallback, reason="default")


def _experiment(name: str, caller: Caller, settings: PromptSettings) -> Decision | None:
    """The version an experiment assigns ``caller``, or None (not in any version's share)."""
    for experiment_name in sorted(settings.experiments):
        experiment = settings.experiments[experiment_name]
        if experiment.prompt != name:
            continue
        position = bucket(experiment_name, caller.subject)
        share = 0.0
        for version in sorted(experiment.weights, key=natural_key):
            share += experiment.weights[version]
            if position < round(share * BUCKETS / 100):
                return Decision(name=name, version=version, reason=f"experiment:{experiment_name}")
    return None


def check_settings(settings: PromptSettings, versions: Mapping[str, Collection[str]]) -> None:
    """Every version the settings name exists (``versions``: prompt -> its versions).

    ``ConfigError`` listing each one that does not, so a typo fails start-up, not a request.
    """
    problems: list[str] = []

    def need(name: str, version: str, where: str) -> None:
        if name not in versions:
            problems.append(f"{where} names prompt {name!r}, which has no versions")
        elif version not in versions[name]:
            available = ", ".join(sorted(versions[name], key=natural_key))
            problems.append(f"{where} names {name}@{version}, which does not exist (available: {available})")

    for name in sorted(versions):
        fallback = fallback_version(settings, name)
        if fallback is not None:
            field = "prompts.version" if name == "answer" else f"prompts.{name}_version"
            need(name, fallback, field)
    for name, labels in settings.labels.items():
        for label, version in labels.items():
            need(name, version, f"prompts.labels.{name}.{label}")
    for name, pins in settings.pins.items():
        for tenant, version in pins.items():
            need(name, version, f"prompts.pins.{name}.{tenant}")
    for experiment_name, experiment in settings.experiments.items():
        for version in experiment.weights:
            need(experiment.prompt, version, f"prompts.experiments.{experiment_name}")
    if problems:
        raise ConfigError("; ".join(problems))
