"""Label positions moved at run time, kept in the shared state store.

A label (``production``, ``staging``) of a prompt starts where the configuration puts it
(``prompts.labels``, else the prompt's configured version). ``move`` points it at another
version, ``rollback`` back at the version before, ``reset`` back at the configuration, without a
redeploy: the position is in the state store, so every instance follows it (within
``prompts.refresh_s``, ``app.prompting.selector``).

State keys (the store adds its namespace):

* ``prompts:labels:<name>`` — a hash, label -> ``LabelPosition`` (JSON): the version, who moved
  it when, and the earlier versions ``rollback`` returns to (newest last, ``prompts.history``);
* ``prompts:moves:<name>`` — a capped list of ``LabelMove`` (JSON): who moved which label when.

Two admins moving one label at the same instant may lose one move (read, then write): the
listing shows the one that stuck.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import msgspec
import structlog

from app.errors import InvalidRequestError, NotFoundError
from app.prompting.lock import natural_key
from app.prompting.registry import PromptRegistry
from app.prompting.selection import configured_version
from app.settings import PromptSettings
from app.state import StateStore

__all__ = ["LabelMove", "LabelPosition", "PromptLabels"]

log = structlog.get_logger("kb.prompts")

_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class LabelPosition(msgspec.Struct, frozen=True, kw_only=True):
    """Where a label was moved at run time."""

    version: str
    back: tuple[str, ...] = ()
    """Versions it pointed at before, oldest first: ``rollback`` returns to the last one."""
    action: Literal["promote", "rollback"] = "promote"
    by: str
    at: str
    """ISO 8601, UTC."""


class LabelMove(msgspec.Struct, frozen=True, kw_only=True):
    """One move of a label, as recorded in the history."""

    name: str
    label: str
    version: str
    """Where the label points after the move."""
    previous: str
    """Where it pointed before."""
    action: Literal["promote", "rollback", "reset"]
    by: str
    at: str
    changed: bool = True
    """False when the label already pointed there (nothing was written)."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def _key(name: str) -> str:
    return f"prompts:labels:{name}"


def _moves_key(name: str) -> str:
    return f"prompts:moves:{name}"


class PromptLabels:
    """Reads and moves label positions. Every call may raise ``StateUnavailableError``."""

    def __init__(
        self,
        state: StateStore,
        registry: PromptRegistry,
        settings: PromptSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.state = state
        self.registry = registry
        self.settings = settings
        self._now = now

    async def positions(self, name: str) -> dict[str, LabelPosition]:
        """Run-time positions of the labels of ``name`` (labels never moved are absent)."""
        positions: dict[str, LabelPosition] = {}
        for label, raw in (await self.state.hash_items(_key(name))).items():
            try:
                positions[label] = msgspec.json.decode(raw, type=LabelPosition)
            except msgspec.DecodeError as exc:
                # Written by something else, or by a later version of this code: not followed.
                log.warning("prompt_label_unreadable", prompt=name, label=label, error=str(exc))
        return positions

    async def history(self, name: str, *, last: int | None = None) -> list[LabelMove]:
        """The recorded moves of ``name``'s labels, oldest first."""
        raw = await self.state.list_range(_moves_key(name), last=last or self.settings.history)
        moves = []
        for item in raw:
            try:
                moves.append(msgspec.json.decode(item, type=LabelMove))
            except msgspec.DecodeError:
                continue
        return moves

    def current(self, name: str, label: str, positions: dict[str, LabelPosition]) -> str | None:
        """Where ``label`` points: its run-time position, else the configured one."""
        position = positions.get(label)
        if position is not None and self.registry.has(name, position.version):
            return position.version
        return configured_version(self.settings, name, label)

    async def move(self, name: str, label: str, version: str, *, by: str) -> LabelMove:
        """Point ``label`` of ``name`` at ``version``. ``NotFoundError`` for an unknown prompt,
        ``InvalidRequestError`` for an unknown version or a malformed label."""
        self._check(name, label)
        if not self.registry.has(name, version):
            available = ", ".join(self.registry.versions(name))
            raise InvalidRequestError(
                f"unknown version {version!r} of prompt {name!r}; available: {available}"
            )
        positions = await self.positions(name)
        previous = self.current(name, label, positions) or version
        if previous == version:
            return self._move(name, label, version, previous, "promote", by, changed=False)
        position = positions.get(label)
        back = (*(position.back if position else ()), previous)[-self.settings.history :]
        move = self._move(name, label, version, previous, "promote", by)
        await self._write(move, LabelPosition(version=version, back=back, by=by, at=move.at))
        return move

    async def rollback(self, name: str, label: str, *, by: str) -> LabelMove:
        """Point ``label`` back at the version it pointed at before its last move."""
        self._check(name, label)
        positions = await self.positions(name)
        position = positions.get(label)
        back = [v for v in (position.back if position else ()) if self.registry.has(name, v)]
        if position is None or not back:
            raise InvalidRequestError(
                f"label {label!r} of prompt {name!r} has no earlier version to roll back to "
                "(it was not moved at run time, or its earlier versions no longer exist)"
            )
        target = back[-1]
        move = self._move(name, label, target, position.version, "rollback", by)
        await self._write(
            move, LabelPosition(version=target, back=tuple(back[:-1]), action="rollback", by=by, at=move.at)
        )
        return move

    async def reset(self, name: str, label: str, *, by: str) -> LabelMove:
        """Forget the run-time position: ``label`` follows the configuration again."""
        self._check(name, label)
        positions = await self.positions(name)
        configured = configured_version(self.settings, name, label)
        if configured is None:
            raise InvalidRequestError(f"label {label!r} of prompt {name!r} has no configured version")
        position = positions.get(label)
        if position is None:
            return self._move(name, label, configured, configured, "reset", by, changed=False)
        move = self._move(name, label, configured, position.version, "reset", by)
        await self.state.hash_delete(_key(name), label)
        await self._record(move)
        return move

    def labels(self, name: str, positions: dict[str, LabelPosition]) -> list[str]:
        """Every label of ``name`` worth listing: configured, moved, and the one followed here."""
        found = {self.settings.label, *self.settings.labels.get(name, {}), *positions}
        return sorted(found, key=natural_key)

    def _check(self, name: str, label: str) -> None:
        if name not in self.registry.names():
            raise NotFoundError(f"no prompt named {name!r}; prompts: {', '.join(self.registry.names())}")
        if not _LABEL_RE.match(label):
            raise InvalidRequestError(
                f"label {label!r} must be lowercase letters, digits, - or _ (at most 32, a letter first)"
            )

    def _move(
        self,
        name: str,
        label: str,
        version: str,
        previous: str,
        action: Literal["promote", "rollback", "reset"],
        by: str,
        *,
        changed: bool = True,
    ) -> LabelMove:
        at = self._now().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return LabelMove(
            name=name,
            label=label,
            version=version,
            previous=previous,
            action=action,
            by=by,
            at=at,
            changed=changed,
        )

    async def _write(self, move: LabelMove, position: LabelPosition) -> None:
        await self.state.hash_set(_key(move.name), move.label, msgspec.json.encode(position))
        await self._record(move)

    async def _record(self, move: LabelMove) -> None:
        await self.state.list_push(
            _moves_key(move.name), msgspec.json.encode(move), max_len=self.settings.history
        )
        log.info(
            "prompt_label_moved",
            prompt=move.name,
            label=move.label,
            version=move.version,
            previous=move.previous,
            action=move.action,
            by=move.by,
        )
