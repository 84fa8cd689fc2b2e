"""API keys: their format, their hash, their records, and the key ring over a real state store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from app.access import KEYS_HASH, KeyRing, expiry_time, new_record, normalise_origin, parse_duration
from app.access.hashing import hash_key, key_id_of, new_key, verify_key
from app.access.testing import declared_key
from app.errors import AuthenticationError, ConfigError, InvalidRequestError, NotFoundError
from app.settings import AccessSettings, StaticKeySettings
from app.state import MemoryStateStore

pytestmark = pytest.mark.unit

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class Clock:
    """Wall-clock seconds a test moves by hand."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at.timestamp()

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


def ring(*entries: StaticKeySettings, clock: Clock | None = None, cache_s: float = 30.0) -> KeyRing:
    settings = AccessSettings(keys=entries, verified_cache_s=cache_s)
    return KeyRing(MemoryStateStore(), settings, clock=clock or Clock())


# --------------------------------------------------------------------------- format and hash


def test_a_new_key_names_its_id_and_the_id_is_read_back() -> None:
    key_id, key = new_key()

    assert key.startswith(f"kb_{key_id}_")
    assert key_id_of(key) == key_id
    assert new_key()[1] != key  # random


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "kb_",
        "kb_0123456789ab",
        "kb_0123456789ab_short",
        "kb_0123456789AB_" + "a" * 43,  # upper-case id
        "xx_0123456789ab_" + "a" * 43,
        "kb_0123456789ab_" + "a" * 43 + "x",  # one character too many
        "kb_0123456789ab_" + "a" * 42 + "!",
        " kb_0123456789ab_" + "a" * 43,
    ],
)
def test_anything_but_a_well_formed_key_has_no_id(garbage: str) -> None:
    assert key_id_of(garbage) is None


def test_the_hash_verifies_its_key_and_nothing_else() -> None:
    _, key = new_key()
    _, other = new_key()
    stored = hash_key(key)

    assert stored.startswith("scrypt$") and key not in stored
    assert verify_key(key, stored)
    assert not verify_key(other, stored)
    assert not verify_key(key[:-1] + ("A" if key[-1] != "A" else "B"), stored)
    assert hash_key(key) != stored  # salted


def test_a_tampered_or_foreign_hash_verifies_nothing() -> None:
    _, key = new_key()
    scheme, n, r, p, salt, digest = hash_key(key).split("$")
    flipped = digest[:-2] + ("AA" if digest[-2:] != "AA" else "BB")

    assert not verify_key(key, "$".join([scheme, n, r, p, salt, flipped]))
    assert not verify_key(key, "$".join([scheme, n, r, p, "c2FsdA", digest]))  # another salt
    assert not verify_key(key, "$".join(["bcrypt", n, r, p, salt, digest]))
    assert not verify_key(key, "scrypt$not$numbers$at$all$x")
    assert not verify_key(key, "")


# --------------------------------------------------------------------------- records


def test_a_record_is_refused_once_revoked_or_past_its_expiry() -> None:
    record = new_record(name="ci", tenant="t", role="user", now=NOW, expires_at=expiry_time("1h", NOW))

    assert record.refusal(NOW) is None and record.status(NOW) == "active"
    assert record.refusal(NOW + timedelta(hours=1)) == "the API key has expired"
    assert record.status(NOW + timedelta(hours=2)) == "expired"
    revoked = msgspec.structs.replace(record, revoked_at=NOW.isoformat())
    assert revoked.refusal(NOW) == "the API key has been revoked" and revoked.status(NOW) == "revoked"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("https://Intranet.Example.com", "https://intranet.example.com"),
        ("https://intranet.example.com/", "https://intranet.example.com"),
        ("https://intranet.example.com:443", "https://intranet.example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("null", None),
        ("https://intranet.example.com/page", None),
        ("https://user@intranet.example.com", None),
        ("ftp://intranet.example.com", None),
        ("intranet.example.com", None),
        ("https://intranet.example.com:99999", None),
    ],
)
def test_origins_are_compared_as_browsers_send_them(given: str, normal: str | None) -> None:
    assert normalise_origin(given) == normal


def test_a_widget_key_works_only_with_an_origin_of_its_own() -> None:
    widget = new_record(name="w", tenant="t", role="widget", now=NOW, origins=["https://a.example.com"])
    user = new_record(name="u", tenant="t", role="user", now=NOW)

    assert widget.allows_origin("https://a.example.com")
    assert widget.allows_origin("https://A.example.com:443")
    assert not widget.allows_origin("https://b.example.com")
    assert not widget.allows_origin(None)  # a browser's key, used without a browser
    assert user.allows_origin(None) and user.allows_origin("https://b.example.com")


@pytest.mark.parametrize(
    ("attributes", "complaint"),
    [
        ({"role": "widget"}, "needs at least one origin"),
        ({"role": "user", "origins": ["https://a.example.com"]}, "widget keys only"),
        ({"role": "widget", "origins": ["https://a.example.com/path"]}, "scheme://host"),
        ({"role": "user", "tenant": "*"}, "tenant"),
        ({"role": "user", "name": "  "}, "name"),
        ({"role": "user", "expires_at": "2029-12-31T00:00:00+00:00"}, "not in the future"),
        ({"role": "user", "expires_at": "next tuesday"}, "ISO-8601"),
    ],
)
def test_a_key_cannot_have_attributes_that_would_not_work(
    attributes: dict[str, object], complaint: str
) -> None:
    fields: dict[str, object] = {"name": "k", "tenant": "t", **attributes}
    with pytest.raises(InvalidRequestError, match=complaint):
        new_record(now=NOW, **fields)  # type: ignore[arg-type]


def test_expiry_is_a_duration_from_now_or_a_time() -> None:
    assert expiry_time("90d", NOW) == (NOW + timedelta(days=90)).isoformat()
    assert expiry_time("30m", NOW) == (NOW + timedelta(minutes=30)).isoformat()
    assert expiry_time("2031-06-01", NOW) == "2031-06-01T00:00:00+00:00"
    assert expiry_time("2031-06-01T12:00:00+02:00", NOW) == "2031-06-01T10:00:00+00:00"
    assert parse_duration("0") == timedelta(0) and parse_duration("2w") == timedelta(weeks=2)
    for bad in ("0d", "soon", "-1h"):
        with pytest.raises(InvalidRequestError):
            expiry_time(bad, NOW)


# --------------------------------------------------------------------------- the key ring


async def test_a_created_key_resolves_and_only_its_hash_is_stored() -> None:
    keys = ring()
    key, record = await keys.create(name="ci", tenant="team-a", role="user", tier="gold")

    assert (await keys.resolve(key)).id == record.id == key_id_of(key)
    stored = await keys.state.hash_get(KEYS_HASH, record.id)
    assert stored is not None and key not in stored.decode()
    assert record.tenant == "team-a" and record.tier == "gold" and record.declared_in == "store"


async def test_wrong_malformed_and_unknown_keys_are_refused_without_repeating_them() -> None:
    keys = ring()
    key, _ = await keys.create(name="ci", tenant="t", role="user")
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    _, unknown = new_key()

    for presented, message in [
        (wrong_secret, "unknown API key"),
        (unknown, "unknown API key"),
        ("hunter2", "malformed API key"),
    ]:
        with pytest.raises(AuthenticationError) as refused:
            await keys.resolve(presented)
        assert refused.value.message == message and presented not in str(refused.value)


async def test_the_verified_key_cache_does_not_outlive_a_revocation() -> None:
    keys = ring(cache_s=300.0)
    key, record = await keys.create(name="ci", tenant="t", role="user")
    await keys.resolve(key)  # verified, and remembered

    await keys.revoke(record.id)

    with pytest.raises(AuthenticationError, match="revoked"):
        await keys.resolve(key)


async def test_a_revocation_by_another_ring_on_the_same_state_is_seen_on_the_next_resolve() -> None:
    state = MemoryStateStore()
    serving = KeyRing(state, AccessSettings())
    admin = KeyRing(state, AccessSettings())
    key, record = await admin.create(name="ci", tenant="t", role="user")
    await serving.resolve(key)

    await admin.revoke(record.id)

    with pytest.raises(AuthenticationError, match="revoked"):
        await serving.resolve(key)


async def test_an_expired_key_is_refused_once_its_time_has_come() -> None:
    clock = Clock()
    keys = ring(clock=clock)
    key, _ = await keys.create(name="ci", tenant="t", role="user", expires_at=expiry_time("1h", NOW))
    await keys.resolve(key)

    clock.advance(3600)

    with pytest.raises(AuthenticationError, match="expired"):
        await keys.resolve(key)


async def test_the_cache_only_skips_the_hash_of_a_key_already_verified() -> None:
    keys = ring(cache_s=300.0)
    key, record = await keys.create(name="ci", tenant="t", role="user")
    await keys.resolve(key)
    forged = f"kb_{record.id}_" + "A" * 43  # the same id, another secret

    with pytest.raises(AuthenticationError, match="unknown"):
        await keys.resolve(forged)


async def test_revoking_keeps_the_record_and_is_idempotent() -> None:
    clock = Clock()
    keys = ring(clock=clock)
    _, record = await keys.create(name="ci", tenant="t", role="user")

    first = await keys.revoke(record.id)
    clock.advance(60)
    again = await keys.revoke(record.id)

    assert first.revoked_at == again.revoked_at == NOW.isoformat()
    assert [r.status(NOW) for r in await keys.records()] == ["revoked"]


async def test_a_key_declared_in_configuration_resolves_but_cannot_be_revoked_or_rotated_here() -> None:
    key, entry = declared_key("static", role="admin", tenant="ops")
    keys = ring(entry)

    resolved = await keys.resolve(key)
    assert resolved.role == "admin" and resolved.declared_in == "config"
    for change in (keys.revoke(entry.id), keys.rotate(entry.id)):
        with pytest.raises(InvalidRequestError, match="declared in configuration"):
            await change
    with pytest.raises(NotFoundError):
        await keys.revoke("0123456789ab")


async def test_rotation_gives_a_new_key_with_the_same_attributes_and_revokes_the_old_one() -> None:
    keys = ring()
    old_key, old = await keys.create(
        name="portal", tenant="t", role="widget", tier="gold", origins=["https://a.example.com"]
    )

    new_key_, fresh, retired = await keys.rotate(old.id)

    assert (fresh.name, fresh.tenant, fresh.role, fresh.tier, fresh.origins) == (
        old.name,
        old.tenant,
        old.role,
        old.tier,
        old.origins,
    )
    assert fresh.id != old.id and retired.replaced_by == fresh.id
    assert (await keys.resolve(new_key_)).id == fresh.id
    with pytest.raises(AuthenticationError, match="revoked"):
        await keys.resolve(old_key)
    with pytest.raises(InvalidRequestError, match="revoked"):
        await keys.rotate(old.id)


async def test_rotation_with_a_grace_period_lets_the_old_key_work_until_it_ends() -> None:
    clock = Clock()
    keys = ring(clock=clock)
    old_key, old = await keys.create(name="ci", tenant="t", role="user")

    new_key_, _, retired = await keys.rotate(old.id, grace_s=600)

    assert retired.revoked_at is None and retired.expires_at == (NOW + timedelta(minutes=10)).isoformat()
    await keys.resolve(old_key)
    await keys.resolve(new_key_)
    clock.advance(600)
    with pytest.raises(AuthenticationError, match="expired"):
        await keys.resolve(old_key)
    await keys.resolve(new_key_)


async def test_listing_has_configured_keys_first_then_stored_ones_oldest_first() -> None:
    clock = Clock()
    _, entry = declared_key("static")
    keys = ring(entry, clock=clock)
    _, first = await keys.create(name="first", tenant="t", role="user")
    clock.advance(1)
    _, second = await keys.create(name="second", tenant="t", role="admin")

    assert [r.id for r in await keys.records()] == [entry.id, first.id, second.id]


async def test_preflights_are_answered_for_the_origins_of_usable_widget_keys_only() -> None:
    _, entry = declared_key("static-widget", role="widget", origins=("https://static.example.com",))
    keys = ring(entry)
    await keys.create(name="w", tenant="t", role="widget", origins=["https://a.example.com"])
    _, revoked = await keys.create(
        name="gone", tenant="t", role="widget", origins=["https://gone.example.com"]
    )
    await keys.revoke(revoked.id)

    assert await keys.widget_origins() == {"https://static.example.com", "https://a.example.com"}


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        (declared_key("w", role="widget")[1], "needs at least one origin"),
        (declared_key("w", role="widget", origins=("not an origin",))[1], "scheme://host"),
        (declared_key("u", expires_at="whenever")[1], "ISO-8601"),
    ],
)
def test_a_configured_key_that_could_not_work_fails_at_start_up(
    entry: StaticKeySettings, complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        ring(entry)


def test_two_configured_keys_with_one_id_fail_at_start_up() -> None:
    _, entry = declared_key("a")
    with pytest.raises(ConfigError, match="same id"):
        ring(entry, msgspec.structs.replace(entry, name="b"))
