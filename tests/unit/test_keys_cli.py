"""``kb keys``: the key is printed once and alone; listings show no secret; config keys stay put.

The commands run in-process (click's runner) against the local state file in a temporary data
folder, the store a running service with the same configuration reads.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner, Result

from app.access import KeyRing
from app.access.testing import declared_key
from app.cli import cli
from app.config import load_settings
from app.errors import AuthenticationError
from app.settings import AccessSettings, StaticKeySettings
from app.state import open_state_store
from tests.services.logging_state import logging_restored

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def entry_point_logging_restored() -> Iterator[None]:
    """``kb keys`` configures logging as an entry point does; later tests get theirs back."""
    with logging_restored():
        yield


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str | None]:
    """Only this test's data folder; nothing of the shell's (no REDIS_URL, no KB_ variables)."""
    return {
        "KB_DATA_DIR": str(tmp_path / "data"),
        "KB_LIMITS__TIERS__GOLD__CONCURRENCY": "8",  # a tier besides the default one
        "REDIS_URL": None,
        "KB_ENV": None,
    }


def kb(environment: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(cli, ["keys", *args], env=environment, catch_exceptions=False)


def resolve(environment: dict[str, str | None], key: str) -> str:
    """The id of ``key`` as a service with the same configuration resolves it."""
    settings = load_settings(environ={k: v for k, v in environment.items() if v is not None})

    async def main() -> str:
        state = open_state_store(settings)
        try:
            return (await KeyRing(state, settings.access).resolve(key)).id
        finally:
            await state.aclose()

    return asyncio.run(main())


def test_create_prints_the_key_once_on_stdout_and_its_details_with_a_warning_on_stderr(
    environment: dict[str, str | None],
) -> None:
    result = kb(
        environment, "create", "--name", "ci bot", "--tenant", "team-a", "--tier", "gold", "--expires", "90d"
    )

    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("kb_") and "\n" not in key
    assert key not in result.stderr
    assert "shown only once" in result.stderr
    for detail in ("ci bot", "team-a", "gold", "user"):
        assert detail in result.stderr
    assert resolve(environment, key) == key.split("_")[1]


def test_create_as_json_is_one_object_with_the_key_and_no_hash(environment: dict[str, str | None]) -> None:
    result = kb(
        environment,
        "create",
        "--name",
        "portal",
        "--role",
        "widget",
        "--origin",
        "https://Intra.Example.com",
        "--json",
    )

    created = json.loads(result.stdout)
    assert created["key"].startswith(f"kb_{created['id']}_")
    assert created["origins"] == ["https://intra.example.com"] and created["role"] == "widget"
    assert "hash" not in created and created["status"] == "active"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--role", "widget"], "needs at least one origin"),
        (["--origin", "https://a.example.com"], "widget keys only"),
        (["--tenant", "no spaces"], "tenant"),
        (["--expires", "whenever"], "neither a duration"),
        (["--tier", "platinum"], "tier 'platinum' is not configured"),
    ],
)
def test_create_refuses_a_key_that_could_not_work_with_a_message(
    environment: dict[str, str | None], args: list[str], complaint: str
) -> None:
    result = kb(environment, "create", "--name", "k", *args)

    assert result.exit_code == 1
    assert complaint in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_list_never_shows_a_key_or_a_hash(environment: dict[str, str | None]) -> None:
    key = kb(environment, "create", "--name", "ci").stdout.strip()

    table = kb(environment, "list")
    listed = json.loads(kb(environment, "list", "--json").stdout)

    assert key not in table.output and "scrypt" not in table.output
    assert key.split("_")[1] in table.output and "active" in table.output
    assert [entry["name"] for entry in listed] == ["ci"]
    assert "hash" not in listed[0] and key not in json.dumps(listed)


def test_revoke_takes_the_id_and_the_key_stops_resolving(environment: dict[str, str | None]) -> None:
    key = kb(environment, "create", "--name", "ci").stdout.strip()
    key_id = key.split("_")[1]

    revoked = kb(environment, "revoke", key_id)
    again = kb(environment, "revoke", key)  # a leaked key pasted whole names its id

    assert revoked.exit_code == 0 and "revoked key" in revoked.stderr
    assert again.exit_code == 0 and "already revoked" in again.stderr
    with pytest.raises(AuthenticationError, match="revoked"):
        resolve(environment, key)
    assert json.loads(kb(environment, "list", "--json").stdout)[0]["status"] == "revoked"


def test_revoking_an_unknown_id_fails_with_a_message(environment: dict[str, str | None]) -> None:
    result = kb(environment, "revoke", "0123456789ab")

    assert result.exit_code == 1 and "no key with id 0123456789ab" in result.stderr


def test_a_key_declared_in_configuration_cannot_be_revoked_here_and_says_where_it_lives(
    environment: dict[str, str | None], tmp_path: Path
) -> None:
    _, entry = declared_key("static")
    config = tmp_path / "config"
    config.mkdir()
    (config / "default.toml").write_text(_toml(entry))

    result = kb({**environment, "KB_CONFIG_DIR": str(config)}, "revoke", entry.id)

    assert result.exit_code == 1
    assert "declared in configuration" in result.stderr and "access.keys" in result.stderr


def test_rotate_prints_a_new_key_for_the_same_holder_and_revokes_the_old(
    environment: dict[str, str | None],
) -> None:
    old = json.loads(kb(environment, "create", "--name", "ci", "--tenant", "team-a", "--json").stdout)

    rotated = kb(environment, "rotate", old["id"])

    new_key = rotated.stdout.strip()
    assert rotated.exit_code == 0 and "is revoked" in rotated.stderr and "shown only once" in rotated.stderr
    assert resolve(environment, new_key) != old["id"]
    with pytest.raises(AuthenticationError, match="revoked"):
        resolve(environment, old["key"])
    listed = {entry["id"]: entry for entry in json.loads(kb(environment, "list", "--json").stdout)}
    assert listed[old["id"]]["replaced_by"] == new_key.split("_")[1]
    assert listed[new_key.split("_")[1]]["tenant"] == "team-a"


def test_rotate_with_grace_keeps_the_old_key_working_for_a_while(environment: dict[str, str | None]) -> None:
    old = json.loads(kb(environment, "create", "--name", "ci", "--json").stdout)

    rotated = kb(environment, "rotate", old["id"], "--grace", "1h")

    assert rotated.exit_code == 0 and "keeps working until" in rotated.stderr
    assert resolve(environment, old["key"]) == old["id"]
    assert resolve(environment, rotated.stdout.strip()) != old["id"]


def test_hash_prints_a_config_entry_that_declares_the_key_it_shows_once(
    environment: dict[str, str | None],
) -> None:
    result = kb(
        environment,
        "hash",
        "--name",
        "static portal",
        "--role",
        "widget",
        "--origin",
        "https://a.example.com",
    )

    assert result.exit_code == 0, result.output
    (entry,) = tomllib.loads(result.stdout)["access"]["keys"]
    key = next(word for word in result.stderr.split() if word.startswith("kb_"))
    assert key not in result.stdout and "shown only once" in result.stderr
    declared = msgspec.convert(entry, StaticKeySettings)
    assert declared.origins == ("https://a.example.com",) and declared.role == "widget"

    async def resolved() -> str:
        state = open_state_store(load_settings(environ={"KB_DATA_DIR": str(environment["KB_DATA_DIR"])}))
        try:
            return (await KeyRing(state, AccessSettings(keys=(declared,))).resolve(key)).name
        finally:
            await state.aclose()

    assert asyncio.run(resolved()) == "static portal"
    assert json.loads(kb(environment, "list", "--json").stdout) == []  # nothing was stored


def _toml(entry: StaticKeySettings) -> str:
    fields = msgspec.to_builtins(entry)
    return "[[access.keys]]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in fields.items() if v is not None
    )
