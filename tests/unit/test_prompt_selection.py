"""Which version answers: the pure decision (override > tenant pin > experiment > label > default)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import pytest

from app.config import load_settings
from app.errors import ConfigError, InvalidRequestError
from app.prompting import Decision, bucket, check_settings, choose, parse_override
from app.records import Caller
from app.settings import PromptSettings

pytestmark = pytest.mark.unit

KNOWN = ("v1", "v2", "v3")
ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="sales", role="user")
LEGAL = Caller(key_id="0123456789ab", name="lawyer", tenant="legal", role="user")


def prompts(**fields: Any) -> PromptSettings:
    return msgspec.convert(fields, PromptSettings)


def caller(n: int, tenant: str = "sales") -> Caller:
    return Caller(key_id=f"{n:012x}", name=f"user{n}", tenant=tenant, role="user")


def decide(
    settings: PromptSettings,
    who: Caller = ALICE,
    *,
    moved: str | None = None,
    override: str | None = None,
    name: str = "answer",
) -> Decision:
    return choose(name, caller=who, settings=settings, moved=moved, known=KNOWN, override=override)


EVERYTHING = prompts(
    labels={"answer": {"production": "v2", "staging": "v3"}},
    pins={"answer": {"legal": "v1"}},
    experiments={"all-in": {"weights": {"v3": 100}}},
)


@pytest.mark.parametrize(
    ("settings", "who", "moved", "override", "expected"),
    [
        (prompts(), ALICE, None, None, ("v1", "default")),
        (prompts(version="v2"), ALICE, None, None, ("v2", "default")),
        (prompts(labels={"answer": {"production": "v2"}}), ALICE, None, None, ("v2", "label:production")),
        (prompts(labels={"answer": {"staging": "v2"}}), ALICE, None, None, ("v1", "default")),
        (
            prompts(label="staging", labels={"answer": {"staging": "v3"}}),
            ALICE,
            None,
            None,
            ("v3", "label:staging"),
        ),
        (prompts(), ALICE, "v3", None, ("v3", "label:production")),
        (prompts(labels={"answer": {"production": "v2"}}), ALICE, "v3", None, ("v3", "label:production")),
        (prompts(labels={"answer": {"production": "v2"}}), ALICE, "v9", None, ("v2", "label:production")),
        (prompts(pins={"answer": {"legal": "v2"}}), LEGAL, "v3", None, ("v2", "tenant:legal")),
        (prompts(pins={"answer": {"legal": "v2"}}), ALICE, "v3", None, ("v3", "label:production")),
        (EVERYTHING, ALICE, "v1", None, ("v3", "experiment:all-in")),
        (EVERYTHING, LEGAL, None, None, ("v1", "tenant:legal")),
        (EVERYTHING, LEGAL, None, "v2", ("v2", "override")),
        (EVERYTHING, ALICE, None, "answer@v1", ("v1", "override")),
        (EVERYTHING, ALICE, None, "  v2 ", ("v2", "override")),
    ],
    ids=[
        "default",
        "default-configured",
        "label-configured",
        "another-label-configured",
        "environment-follows-staging",
        "moved",
        "moved-beats-configured",
        "moved-to-unknown-is-ignored",
        "pin-beats-label",
        "pin-is-per-tenant",
        "experiment-beats-label",
        "pin-beats-experiment",
        "override-beats-everything",
        "override-with-name",
        "override-trimmed",
    ],
)
def test_the_first_rule_that_applies_decides(
    settings: PromptSettings,
    who: Caller,
    moved: str | None,
    override: str | None,
    expected: tuple[str, str],
) -> None:
    decision = decide(settings, who, moved=moved, override=override)
    assert (decision.version, decision.reason) == expected
    assert decision.ref == f"answer@{expected[0]}"


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("v9", r"unknown prompt version answer@v9 in the override; available: v1, v2, v3"),
        ("answer@v9", "unknown prompt version answer@v9"),
        ("condense@v1", "names prompt 'condense'"),
        ("", "names no version"),
        ("answer@", "names no version"),
    ],
)
def test_an_override_that_names_no_known_version_is_refused(override: str, problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        decide(EVERYTHING, override=override)


def test_parse_override_accepts_a_version_or_name_at_version() -> None:
    assert parse_override("v2", "answer") == parse_override("answer@v2", "answer") == "v2"


def test_the_condense_prompt_has_its_own_default_labels_and_pins() -> None:
    settings = prompts(
        condense_version="v2",
        labels={"answer": {"production": "v3"}},
        pins={"answer": {"legal": "v1"}},
    )
    assert decide(settings, name="condense") == Decision(name="condense", version="v2", reason="default")
    assert decide(settings, LEGAL, name="condense").version == "v2"  # the pin is answer's
    assert decide(settings, name="condense", moved="v3").version == "v3"


# --- experiments -------------------------------------------------------------------------------


def test_an_experiment_splits_callers_by_its_weights_and_the_rest_follow_the_label() -> None:
    settings = prompts(experiments={"terse": {"weights": {"v2": 10}}})
    counts = Counter(decide(settings, caller(n), moved="v3").reason for n in range(10_000))
    assert 900 <= counts["experiment:terse"] <= 1100
    assert counts["label:production"] == 10_000 - counts["experiment:terse"]
    followers = {decide(settings, caller(n), moved="v3").version for n in range(200)} - {"v2"}
    assert followers == {"v3"}  # where the label was moved, not where the experiment was


def test_a_caller_keeps_its_version_whatever_the_label_does() -> None:
    settings = prompts(experiments={"split": {"weights": {"v1": 50, "v2": 50}}})
    for n in range(200):
        first = decide(settings, caller(n))
        assert first.reason == "experiment:split"
        assert decide(settings, caller(n), moved="v3") == first
        assert decide(settings, caller(n, tenant="other")) == first  # by key, not by tenant


def test_buckets_are_stable_uniform_and_independent_per_experiment() -> None:
    subjects = [caller(n).subject for n in range(5000)]
    assert [bucket("a", s) for s in subjects[:50]] == [bucket("a", s) for s in subjects[:50]]
    assert all(0 <= bucket("a", s) < 10_000 for s in subjects)
    in_a = {s for s in subjects if bucket("a", s) < 5000}
    in_b = {s for s in subjects if bucket("b", s) < 5000}
    assert 2300 <= len(in_a) <= 2700
    assert 1000 <= len(in_a & in_b) <= 1500  # about a quarter: the two halves are unrelated


def test_anonymous_callers_are_bucketed_by_their_address() -> None:
    settings = prompts(experiments={"split": {"weights": {"v1": 50, "v2": 50}}})
    one = Caller(key_id=None, name="anonymous", tenant="default", role="anonymous", client="10.0.0.1")
    again = msgspec.structs.replace(one)
    assert decide(settings, one) == decide(settings, again)
    versions = {
        decide(settings, msgspec.structs.replace(one, client=f"10.0.{n // 250}.{n % 250}")).version
        for n in range(100)
    }
    assert versions == {"v1", "v2"}


def test_experiments_apply_in_name_order_and_only_to_their_prompt() -> None:
    settings = prompts(
        experiments={
            "b-second": {"weights": {"v3": 100}},
            "a-first": {"weights": {"v2": 100}},
            "other": {"prompt": "condense", "weights": {"v1": 100}},
        }
    )
    assert decide(settings).reason == "experiment:a-first"
    assert decide(settings, name="condense").reason == "experiment:other"


# --- settings ----------------------------------------------------------------------------------


def test_every_version_the_settings_name_must_exist() -> None:
    settings = prompts(
        version="v7",
        labels={"answer": {"staging": "v8"}},
        pins={"answer": {"legal": "v9"}},
        experiments={"x": {"weights": {"v10": 5}}, "y": {"prompt": "summary", "weights": {"v1": 5}}},
    )
    with pytest.raises(ConfigError) as info:
        check_settings(settings, {"answer": KNOWN, "condense": ("v1",)})
    message = info.value.message
    for problem in (
        "prompts.version names answer@v7",
        "prompts.labels.answer.staging names answer@v8",
        "prompts.pins.answer.legal names answer@v9",
        "prompts.experiments.x names answer@v10",
        "prompts.experiments.y names prompt 'summary'",
    ):
        assert problem in message
    check_settings(EVERYTHING, {"answer": KNOWN, "condense": ("v1",)})  # nothing missing: no error


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"KB_PROMPTS__EXPERIMENTS": "{x = {weights = {v2 = 60, v3 = 50}}}"}, "add up to 110"),
        ({"KB_PROMPTS__EXPERIMENTS": "{x = {weights = {}}}"}, "at least one version"),
        ({"KB_PROMPTS__EXPERIMENTS": "{x = {weights = {v2 = 0}}}"}, "prompts.experiments"),
        ({"KB_PROMPTS__LABEL": "Prod Uction"}, "prompts.label"),
        ({"KB_PROMPTS__REFRESH_S": "0"}, "prompts.refresh_s"),
    ],
)
def test_malformed_prompt_settings_fail_at_load(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(environ=environ)


def test_labels_pins_and_experiments_are_read_from_configuration() -> None:
    settings = load_settings(
        environ={
            "KB_PROMPTS__LABEL": "staging",
            "KB_PROMPTS__LABELS": '{answer = {staging = "v2"}}',
            "KB_PROMPTS__PINS": '{answer = {legal = "v1"}}',
            "KB_PROMPTS__EXPERIMENTS": "{terse = {weights = {v2 = 12.5}}}",
        }
    ).prompts
    assert settings.labels == {"answer": {"staging": "v2"}}
    assert settings.pins == {"answer": {"legal": "v1"}}
    assert settings.experiments["terse"].weights == {"v2": 12.5}
    assert settings.experiments["terse"].prompt == "answer"
    chosen = decide(settings)  # the experiment's v2, or the staging label's v2: v2 either way
    assert chosen.version == "v2" and chosen.reason in ("experiment:terse", "label:staging")
