"""``kb keys``: create, list, revoke and rotate API keys; ``kb keys hash`` for static configs.

Keys live in the state store (``app.state``: Redis when ``REDIS_URL`` is set, else the local
state file under ``data_dir``), the one a running ``kb serve`` with the same configuration reads
on every request, so a new key works and a revoked one is refused on the next request.

A new key is printed once, alone on stdout (``KEY=$(kb keys create ...)``), its details and the
warning on stderr; with ``--json``, one object on stdout. Listings never show a key or a hash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import click
import msgspec

from app.access import (
    KeyRecord,
    KeyRing,
    KeyRole,
    expiry_time,
    new_record,
    parse_duration,
    with_secret,
)
from app.access.hashing import key_id_of
from app.config import load_settings
from app.errors import KBError
from app.logs import ensure_logging
from app.settings import Settings
from app.state import open_state_store

__all__ = ["keys_command"]

T = TypeVar("T")
ROLES = ("user", "widget", "admin")
_SHOWN_ONCE = "This key is shown only once: store it now (a secret manager, the client's config). Only its hash is kept."


@click.group("keys")
def keys_command() -> None:
    """Manage API keys, in the state store a running service reads (Redis when REDIS_URL is
    set, else the local state file)."""


def _key_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--name", required=True, help="Who or what the key is for (shown in listings and logs)."
        ),
        click.option("--tenant", help="Whose documents the key retrieves.", show_default="ingest.tenant"),
        click.option("--role", type=click.Choice(ROLES), default="user", show_default=True),
        click.option("--tier", default="default", show_default=True, help="Limit tier (limits.tiers)."),
        click.option(
            "--origin",
            "origins",
            multiple=True,
            help="A web origin a widget key works from, https://host[:port] (repeatable; widget keys need one).",
        ),
        click.option(
            "--expires", help="When the key stops working: 30m, 12h, 90d, 2w, or an ISO-8601 date/time."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@keys_command.command("create")
@_key_options
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as one JSON object.")
def create_command(
    name: str,
    tenant: str | None,
    role: str,
    tier: str,
    origins: tuple[str, ...],
    expires: str | None,
    as_json: bool,
) -> None:
    """Create a key in the state store and print it, once."""
    settings = _settings()
    _check_tier(settings, tier)

    async def create(ring: KeyRing) -> tuple[str, KeyRecord]:
        return await ring.create(
            name=name,
            tenant=tenant or settings.ingest.tenant,
            role=cast("KeyRole", role),
            tier=tier,
            origins=origins,
            expires_at=expiry_time(expires, ring.now()) if expires else None,
        )

    key, record = _run(settings, create)
    _print_new_key(key, record, as_json=as_json, headline=f"created key {record.id}")


@keys_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of records (never keys or hashes).")
def list_command(as_json: bool) -> None:
    """List every key: declared in configuration, and stored."""
    settings = _settings()
    records = _run(settings, lambda ring: ring.records())
    now = datetime.now(UTC)
    if as_json:
        payload = [_described(record, now) for record in records]
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    if not records:
        click.echo("no keys (create one with `kb keys create --name NAME`)", err=True)
        return
    rows = [
        [
            r.id,
            r.name,
            r.tenant,
            r.role,
            r.tier,
            r.status(now),
            r.expires_at or "-",
            ",".join(r.origins) or "-",
            r.declared_in,
        ]
        for r in records
    ]
    click.echo(_table(["id", "name", "tenant", "role", "tier", "status", "expires", "origins", "in"], rows))


@keys_command.command("revoke")
@click.argument("key_id")
def revoke_command(key_id: str) -> None:
    """Revoke the key KEY_ID (its id, as `kb keys list` shows it); refused from the next request on."""
    settings = _settings()
    key_id = _id_of(key_id)

    async def revoke(ring: KeyRing) -> tuple[bool, KeyRecord]:
        before = await ring.record(key_id)
        return bool(before and before.revoked_at), await ring.revoke(key_id)

    already, record = _run(settings, revoke)
    if already:
        click.echo(f"key {key_id} ({record.name}) was already revoked at {record.revoked_at}", err=True)
    else:
        click.echo(f"revoked key {key_id} ({record.name}, tenant {record.tenant})", err=True)


@keys_command.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    default="0",
    show_default=True,
    help="How long the old key keeps working (30m, 12h, 2d); 0 revokes it now.",
)
@click.option("--expires", help="Expiry of the new key (default: the old key's).")
@click.option("--json", "as_json", is_flag=True, help="Print the new key and its record as one JSON object.")
def rotate_command(key_id: str, grace: str, expires: str | None, as_json: bool) -> None:
    """Replace KEY_ID by a new key with the same name, tenant, role, tier and origins."""
    settings = _settings()
    key_id = _id_of(key_id)

    async def rotate(ring: KeyRing) -> tuple[str, KeyRecord, KeyRecord]:
        return await ring.rotate(
            key_id,
            grace_s=parse_duration(grace).total_seconds(),
            expires_at=expiry_time(expires, ring.now()) if expires else None,
        )

    key, fresh, old = _run(settings, rotate)
    if old.revoked_at:
        fate = f"the old key {old.id} is revoked"
    else:
        fate = f"the old key {old.id} keeps working until {old.expires_at}"
    _print_new_key(key, fresh, as_json=as_json, headline=f"rotated key {old.id}: new key {fresh.id}; {fate}")


@keys_command.command("hash")
@_key_options
def hash_command(
    name: str, tenant: str | None, role: str, tier: str, origins: tuple[str, ...], expires: str | None
) -> None:
    """Make a key for a static deployment: its `[[access.keys]]` entry on stdout (for the config
    file), the key itself on stderr, once. Nothing is stored."""
    settings = _settings()
    _check_tier(settings, tier)
    now = datetime.now(UTC)
    try:
        record = new_record(
            name=name,
            tenant=tenant or settings.ingest.tenant,
            role=cast("KeyRole", role),
            now=now,
            tier=tier,
            origins=origins,
            expires_at=expiry_time(expires, now) if expires else None,
        )
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    key, record = with_secret(record)
    click.echo(_toml_entry(record), nl=False)
    click.echo(f"key {record.id} ({record.name}): {key}\n{_SHOWN_ONCE}", err=True)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    # Warnings of the state store (and libraries) only, structured like the service's; a process
    # that configured logging already (a test, a script) keeps its own.
    ensure_logging(json_lines=settings.env == "production", level=logging.WARNING)
    return settings


def _check_tier(settings: Settings, tier: str) -> None:
    """A tier the limits know: any other would silently get the default tier's limits."""
    if tier != "default" and tier not in settings.limits.tiers:
        known = ", ".join(["default", *sorted(settings.limits.tiers)])
        raise click.ClickException(f"tier {tier!r} is not configured (limits.tiers); known tiers: {known}")


def _run(settings: Settings, work: Callable[[KeyRing], Awaitable[T]]) -> T:
    """``work`` on a key ring over the configured state store, closed afterwards."""

    async def main() -> T:
        state = open_state_store(settings)
        try:
            return await work(KeyRing(state, settings.access))
        finally:
            await state.aclose()

    try:
        return asyncio.run(main())
    except KBError as exc:
        raise click.ClickException(exc.message) from None


def _id_of(given: str) -> str:
    """A key id, also from a whole key pasted in (revoking a leaked key)."""
    given = given.strip()
    return key_id_of(given) or given


def _print_new_key(key: str, record: KeyRecord, *, as_json: bool, headline: str) -> None:
    now = datetime.now(UTC)
    if as_json:
        sys.stdout.write(json.dumps({"key": key, **_described(record, now)}) + "\n")
    else:
        click.echo(key)
    details = _described(record, now)
    lines = [headline] + [f"  {field}: {_shown(details[field])}" for field in _DETAILS]
    click.echo("\n".join([*lines, _SHOWN_ONCE]), err=True)


_DETAILS = ("id", "name", "tenant", "role", "tier", "origins", "expires_at")


def _described(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """The record as listings show it: without its hash, with its status."""
    described: dict[str, Any] = msgspec.to_builtins(record)
    described.pop("hash")
    described["status"] = record.status(now)
    return described


def _shown(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, list | tuple):
        return ", ".join(value) or "-"
    return str(value)


def _toml_entry(record: KeyRecord) -> str:
    fields: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "tenant": record.tenant,
        "role": record.role,
        "tier": record.tier,
        "hash": record.hash,
    }
    if record.origins:
        fields["origins"] = list(record.origins)
    if record.expires_at:
        fields["expires_at"] = record.expires_at
    # JSON strings and arrays of strings are valid TOML values, escapes included.
    body = "".join(f"{field} = {json.dumps(value, ensure_ascii=False)}\n" for field, value in fields.items())
    return "[[access.keys]]\n" + body


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
