"""Labels moved at run time (promote, rollback, reset, history) and the per-instance selection that
follows them within ``prompts.refresh_s``, also while the state store is down.

The state store is the in-memory one (a unit test); the Redis and file stores, shared by two
instances, are in tests/integration/test_prompt_labels_shared.py.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog.testing

from app.errors import ConfigError, InvalidRequestError, NotFoundError, StateUnavailableError
from app.prompting import PromptLabels, PromptRegistry, PromptSelection
from app.prompting.overview import overview
from app.records import Caller
from app.resources import prompts_dir
from app.settings import PromptSettings
from app.state import MemoryStateStore

pytestmark = pytest.mark.unit

ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="sales", role="user")
WHEN = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> PromptRegistry:
    """The shipped prompts plus drafts answer v3 and v4."""
    folder = tmp_path_factory.mktemp("prompts") / "prompts"
    shutil.copytree(prompts_dir(environ={}), folder)
    text = (folder / "answer" / "v1.toml").read_text(encoding="utf-8")
    for version in ("v3", "v4"):
        (folder / "answer" / f"{version}.toml").write_text(
            text.replace('version = "v1"', f'version = "{version}"'), encoding="utf-8"
        )
    return PromptRegistry(folder)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Switchable(MemoryStateStore):
    """The in-memory store, with an outage switch and a count of label reads."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.reads = 0

    async def hash_items(self, key: str) -> dict[str, bytes]:
        self.reads += 1
        if self.down:
            raise StateUnavailableError("state store unreachable (test outage)")
        return await super().hash_items(key)


def settings(**fields: Any) -> PromptSettings:
    return msgspec.convert(fields, PromptSettings)


def labels_on(state: MemoryStateStore, registry: PromptRegistry, **fields: Any) -> PromptLabels:
    return PromptLabels(state, registry, settings(**fields), now=lambda: WHEN)


def instance(
    state: MemoryStateStore, registry: PromptRegistry, clock: Clock, **fields: Any
) -> PromptSelection:
    """One service instance's selection over the shared ``state``."""
    labels = labels_on(state, registry, **fields)
    return PromptSelection(registry, labels, labels.settings, clock=clock)


# --- moving labels -----------------------------------------------------------------------------


async def test_a_move_is_recorded_with_who_and_when_and_read_back(registry: PromptRegistry) -> None:
    labels = labels_on(MemoryStateStore(), registry)
    move = await labels.move("answer", "production", "v2", by="ops (key abc)")

    assert (move.version, move.previous, move.action, move.changed) == ("v2", "v1", "promote", True)
    assert move.by == "ops (key abc)" and move.at == "2025-03-01T09:30:00Z"
    positions = await labels.positions("answer")
    assert positions["production"].version == "v2" and positions["production"].back == ("v1",)
    assert labels.current("answer", "production", positions) == "v2"
    assert [m.ref for m in await labels.history("answer")] == ["answer@v2"]


async def test_moving_a_label_where_it_points_writes_nothing(registry: PromptRegistry) -> None:
    labels = labels_on(MemoryStateStore(), registry)
    move = await labels.move("answer", "production", "v1", by="ops")
    assert not move.changed
    assert await labels.positions("answer") == {} and await labels.history("answer") == []


@pytest.mark.parametrize(
    ("name", "label", "version", "error", "problem"),
    [
        (
            "answer",
            "production",
            "v9",
            InvalidRequestError,
            r"unknown version 'v9' of prompt 'answer'; available: v1, v2",
        ),
        ("summary", "production", "v1", NotFoundError, "no prompt named 'summary'"),
        ("answer", "Prod!", "v1", InvalidRequestError, "label 'Prod!' must be lowercase"),
    ],
)
async def test_a_move_to_nowhere_is_refused(
    registry: PromptRegistry, name: str, label: str, version: str, error: type[Exception], problem: str
) -> None:
    with pytest.raises(error, match=problem):
        await labels_on(MemoryStateStore(), registry).move(name, label, version, by="ops")


async def test_rollback_walks_back_through_earlier_versions(registry: PromptRegistry) -> None:
    labels = labels_on(MemoryStateStore(), registry, labels={"answer": {"staging": "v2"}})
    with pytest.raises(InvalidRequestError, match="no earlier version to roll back to"):
        await labels.rollback("answer", "staging", by="ops")
    await labels.move("answer", "staging", "v3", by="ops")
    await labels.move("answer", "staging", "v4", by="ops")

    first = await labels.rollback("answer", "staging", by="ops")
    second = await labels.rollback("answer", "staging", by="ops")

    assert (first.previous, first.version, first.action) == ("v4", "v3", "rollback")
    assert (second.previous, second.version) == ("v3", "v2")  # back where the configuration put it
    with pytest.raises(InvalidRequestError, match="no earlier version"):
        await labels.rollback("answer", "staging", by="ops")
    actions = [(m.action, m.version) for m in await labels.history("answer")]
    assert actions == [("promote", "v3"), ("promote", "v4"), ("rollback", "v3"), ("rollback", "v2")]


async def test_labels_move_independently_per_prompt_and_label(registry: PromptRegistry) -> None:
    labels = labels_on(MemoryStateStore(), registry)
    await labels.move("answer", "staging", "v3", by="ops")
    assert "production" not in await labels.positions("answer")
    assert await labels.positions("condense") == {}


async def test_reset_returns_a_label_to_the_configuration(registry: PromptRegistry) -> None:
    labels = labels_on(MemoryStateStore(), registry, labels={"answer": {"production": "v2"}})
    await labels.move("answer", "production", "v3", by="ops")
    move = await labels.reset("answer", "production", by="ops")
    assert (move.action, move.previous, move.version) == ("reset", "v3", "v2")
    assert await labels.positions("answer") == {}
    assert not (await labels.reset("answer", "production", by="ops")).changed


async def test_rollback_depth_and_history_are_capped(registry: PromptRegistry) -> None:
    labels = labels_on(MemoryStateStore(), registry, history=2)
    for version in ("v2", "v3", "v4", "v2", "v3"):
        await labels.move("answer", "production", version, by="ops")
    assert (await labels.positions("answer"))["production"].back == ("v4", "v2")
    assert len(await labels.history("answer")) == 2


async def test_an_unreadable_position_is_not_followed(registry: PromptRegistry) -> None:
    state = MemoryStateStore()
    await state.hash_set("prompts:labels:answer", "production", b"not json")
    labels = labels_on(state, registry)
    with structlog.testing.capture_logs() as logs:
        assert await labels.positions("answer") == {}
    assert logs[0]["event"] == "prompt_label_unreadable"


# --- instances following a label -----------------------------------------------------------------


async def test_another_instance_follows_a_moved_label_within_the_refresh_interval(
    registry: PromptRegistry,
) -> None:
    state, clock = MemoryStateStore(), Clock()
    one, two = (
        instance(state, registry, clock, refresh_s=2.0),
        instance(state, registry, clock, refresh_s=2.0),
    )
    assert (await two.answer(ALICE)).ref == "answer@v1"

    await one.move("answer", "production", "v2", by="ops")
    assert (await one.answer(ALICE)).ref == "answer@v2"  # the instance that moved it: at once
    clock.now += 1.9
    assert (await two.answer(ALICE)).ref == "answer@v1"  # within its interval: what it read
    clock.now += 0.2
    chosen = await two.answer(ALICE)
    assert (chosen.ref, chosen.reason, chosen.template.version) == ("answer@v2", "label:production", "v2")


async def test_the_condense_prompt_follows_its_own_label(registry: PromptRegistry) -> None:
    state, clock = MemoryStateStore(), Clock()
    selection = instance(state, registry, clock)
    chosen = await selection.condense(ALICE)
    assert (chosen.ref, chosen.reason, chosen.template.turn) == (
        "condense@v1",
        "default",
        registry.condense("v1").turn,
    )


async def test_an_override_is_checked_before_anything_is_answered(registry: PromptRegistry) -> None:
    selection = instance(MemoryStateStore(), registry, Clock())
    assert (await selection.answer(ALICE, override="answer@v3")).reason == "override"
    with pytest.raises(InvalidRequestError, match="unknown prompt version answer@v7"):
        await selection.answer(ALICE, override="v7")


async def test_while_the_state_store_is_down_the_last_known_label_answers_and_it_is_logged_once(
    registry: PromptRegistry,
) -> None:
    state, clock = Switchable(), Clock()
    selection = instance(state, registry, clock, refresh_s=2.0)
    await selection.move("answer", "production", "v3", by="ops")
    assert (await selection.answer(ALICE)).version == "v3"

    state.down = True
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            clock.now += 2.5
            assert (await selection.answer(ALICE)).version == "v3"
        state.down = False
        clock.now += 2.5
        assert (await selection.answer(ALICE)).version == "v3"
    events = [entry["event"] for entry in logs]
    assert events == ["prompt_labels_unavailable", "prompt_labels_available_again"]
    assert logs[0]["serving"] == "answer@v3" and logs[0]["source"] == "last known"
    assert logs[0]["log_level"] == "warning"


async def test_a_store_down_from_the_start_answers_with_the_configured_label_and_retries_later(
    registry: PromptRegistry,
) -> None:
    state, clock = Switchable(), Clock()
    await state.hash_set("prompts:labels:answer", "production", b'{"version":"v3","by":"ops","at":"x"}')
    state.down = True
    selection = instance(state, registry, clock, refresh_s=2.0, labels={"answer": {"production": "v2"}})

    with structlog.testing.capture_logs() as logs:
        assert (await selection.answer(ALICE)).version == "v2"
    assert logs[0]["source"] == "configuration" and logs[0]["serving"] == "answer@v2"
    reads = state.reads
    assert (await selection.answer(ALICE)).version == "v2"
    assert state.reads == reads  # no new attempt within the interval: a down store is not hammered
    state.down = False
    clock.now += 2.0
    assert (await selection.answer(ALICE)).version == "v3"


async def test_requests_during_a_slow_read_use_the_positions_already_known(registry: PromptRegistry) -> None:
    class Slow(MemoryStateStore):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()
            self.slow = False

        async def hash_items(self, key: str) -> dict[str, bytes]:
            if self.slow:
                await self.release.wait()
            return await super().hash_items(key)

    state, clock = Slow(), Clock()
    selection = instance(state, registry, clock, refresh_s=2.0)
    await selection.answer(ALICE)  # positions known: v1
    await labels_on(state, registry).move("answer", "production", "v2", by="elsewhere")
    state.slow = True
    clock.now += 3.0

    refreshing = asyncio.create_task(selection.answer(ALICE))
    await asyncio.sleep(0)
    assert (await asyncio.wait_for(selection.answer(ALICE), 1)).version == "v1"  # did not wait
    state.release.set()
    assert (await refreshing).version == "v2"  # the request that read waited for the read


# --- the listing -------------------------------------------------------------------------------


async def test_the_overview_lists_versions_labels_experiments_pins_and_moves(
    registry: PromptRegistry,
) -> None:
    labels = labels_on(
        MemoryStateStore(),
        registry,
        labels={"answer": {"staging": "v2"}},
        pins={"answer": {"legal": "v1"}},
        experiments={"terse": {"weights": {"v2": 10}}},
    )
    await labels.move("answer", "production", "v2", by="ops")
    shown = await overview(labels)

    assert shown.label == "production" and [p.name for p in shown.prompts] == ["answer", "condense"]
    answer = shown.prompts[0]
    assert [(v.version, v.released) for v in answer.versions] == [
        ("v1", True),
        ("v2", True),
        ("v3", False),
        ("v4", False),
    ]
    assert answer.versions[0].hash == registry.entry("answer", "v1").hash
    assert answer.versions[0].description == registry.answer("v1").description
    production, staging = answer.labels
    assert (production.label, production.version, production.moved, production.followed) == (
        "production",
        "v2",
        True,
        True,
    )
    assert (production.by, production.at, production.rollback_to) == ("ops", "2025-03-01T09:30:00Z", "v1")
    assert (staging.version, staging.moved, staging.followed, staging.by, staging.rollback_to) == (
        "v2",
        False,
        False,
        None,
        None,
    )
    assert [(e.name, e.weights) for e in answer.experiments] == [("terse", {"v2": 10.0})]
    assert answer.pins == {"legal": "v1"} and [m.version for m in answer.moves] == ["v2"]
    assert shown.prompts[1].experiments == [] and shown.prompts[1].labels[0].version == "v1"
    assert msgspec.json.decode(msgspec.json.encode(shown))["prompts"][0]["versions"][0]["parameters"] == {
        "temperature": None,
        "max_tokens": None,
    }


def test_a_selection_refuses_settings_that_name_missing_versions(registry: PromptRegistry) -> None:
    labels = labels_on(MemoryStateStore(), registry, pins={"answer": {"legal": "v8"}})
    with pytest.raises(ConfigError, match=r"prompts.pins.answer.legal names answer@v8"):
        PromptSelection(registry, labels, labels.settings)


def test_a_selection_needs_both_the_answer_and_the_condense_prompt(tmp_path: Path) -> None:
    (tmp_path / "answer").mkdir()
    shutil.copy(prompts_dir(environ={}) / "answer" / "v1.toml", tmp_path / "answer" / "v1.toml")
    registry = PromptRegistry(tmp_path)
    labels = labels_on(MemoryStateStore(), registry)
    with pytest.raises(ConfigError, match=r"no `condense` prompt in .* \(condense/<version>.toml\)"):
        PromptSelection(registry, labels, labels.settings)
