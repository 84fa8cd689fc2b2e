"""The running service's choice of prompt version: ``selection.choose`` over label positions that
are re-read from the state store every ``prompts.refresh_s``.

Each instance keeps the label positions it last read and reads them again once they are older
than ``refresh_s``, on the next request that needs them (that request waits for the read, which
the state store bounds by its timeout; concurrent requests meanwhile use the positions already
known). So a label moved through any instance is followed by every instance within
``refresh_s`` of the move. When the state store is down, the last positions read keep answering
(the configured ones if none was ever read), it is logged once when that starts and once when it
ends, and the read is tried again after ``refresh_s``.

Use: ``await selection.answer(caller, override=...)`` for ``/ask``,
``await selection.condense(caller)`` for a follow-up (both return a ``Selected`` with the typed
template); ``move``/``rollback``/``reset`` move a label and forget the cached positions here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from app.errors import ConfigError, StateUnavailableError
from app.prompting.labels import LabelMove, LabelPosition, PromptLabels
from app.prompting.registry import PromptRegistry
from app.prompting.selection import Decision, check_settings, choose
from app.prompting.template import CondenseTemplate, PromptTemplate
from app.records import Caller
from app.settings import PromptSettings

__all__ = ["PromptSelection", "Selected"]

log = structlog.get_logger("kb.prompts")

T = TypeVar("T", PromptTemplate, CondenseTemplate)


@dataclass(frozen=True, slots=True)
class Selected(Generic[T]):
    """A chosen version with its template."""

    template: T
    name: str
    version: str
    reason: str
    """Why (``selection.Decision.reason``)."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(slots=True)
class _Known:
    positions: dict[str, dict[str, LabelPosition]]
    """Prompt -> label -> run-time position."""
    fresh_until: float


class PromptSelection:
    """Chooses the version per request; one per process, shared by all requests."""

    def __init__(
        self,
        registry: PromptRegistry,
        labels: PromptLabels,
        settings: PromptSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for needed in ("answer", "condense"):  # /ask answers with one, follow-ups need the other
            if needed not in registry.names():
                raise ConfigError(f"no `{needed}` prompt in {registry.directory} ({needed}/<version>.toml)")
        check_settings(settings, {name: registry.versions(name) for name in registry.names()})
        self.registry = registry
        self.labels = labels
        self.settings = settings
        self._clock = clock
        self._known: _Known | None = None
        self._reading = asyncio.Lock()
        self._unavailable = False

    async def answer(self, caller: Caller, *, override: str | None = None) -> Selected[PromptTemplate]:
        """The ``answer`` version for ``caller``; ``override`` (an admin's header) wins, and an
        unknown one raises ``InvalidRequestError``."""
        decision = await self.decide("answer", caller, override=override)
        return Selected(
            self.registry.answer(decision.version), decision.name, decision.version, decision.reason
        )

    async def condense(self, caller: Caller) -> Selected[CondenseTemplate]:
        """The ``condense`` version for ``caller`` (pins, experiments and labels apply as for
        ``answer``; there is no override)."""
        decision = await self.decide("condense", caller)
        return Selected(
            self.registry.condense(decision.version), decision.name, decision.version, decision.reason
        )

    async def decide(self, name: str, caller: Caller, *, override: str | None = None) -> Decision:
        """The version of ``name`` for ``caller`` and why (``selection.choose``)."""
        position = (await self.positions(name)).get(self.settings.label)
        return choose(
            name,
            caller=caller,
            settings=self.settings,
            moved=position.version if position is not None else None,
            known=self.registry.versions(name),
            override=override,
        )

    async def positions(self, name: str) -> dict[str, LabelPosition]:
        """Run-time label positions of ``name``, at most ``refresh_s`` old (or the last known
        while the state store is down). One read refreshes every prompt's."""
        known = self._known
        if known is not None and (self._clock() < known.fresh_until or self._reading.locked()):
            return known.positions.get(name, {})
        async with self._reading:
            known = self._known
            if known is not None and self._clock() < known.fresh_until:
                return known.positions.get(name, {})  # read by the request we waited for
            try:
                positions = {prompt: await self.labels.positions(prompt) for prompt in self.registry.names()}
            except StateUnavailableError as exc:
                positions = known.positions if known is not None else {}
                self._went_unavailable(positions, exc)
            else:
                self._came_back()
            self._known = _Known(positions, self._clock() + self.settings.refresh_s)
            return positions.get(name, {})

    def forget(self) -> None:
        """Treat the positions read as stale: the next request reads them again (they still
        answer if the state store is down then)."""
        if self._known is not None:
            self._known.fresh_until = float("-inf")

    async def move(self, name: str, label: str, version: str, *, by: str) -> LabelMove:
        move = await self.labels.move(name, label, version, by=by)
        self.forget()
        return move

    async def rollback(self, name: str, label: str, *, by: str) -> LabelMove:
        move = await self.labels.rollback(name, label, by=by)
        self.forget()
        return move

    async def reset(self, name: str, label: str, *, by: str) -> LabelMove:
        move = await self.labels.reset(name, label, by=by)
        self.forget()
        return move

    def _went_unavailable(
        self, positions: dict[str, dict[str, LabelPosition]], exc: StateUnavailableError
    ) -> None:
        if self._unavailable:
            return
        self._unavailable = True
        label = self.settings.label
        answering = positions.get("answer", {})
        serving = self.labels.current("answer", label, answering)
        log.warning(
            "prompt_labels_unavailable",
            label=label,
            serving=f"answer@{serving}",
            source="last known" if label in answering else "configuration",
            retry_in_s=self.settings.refresh_s,
            error=exc.message,
        )

    def _came_back(self) -> None:
        if self._unavailable:
            self._unavailable = False
            log.info("prompt_labels_available_again")
