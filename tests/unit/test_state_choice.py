"""Which state store a configuration gets, how it names itself, and which state settings are refused.

Nothing here connects: a Redis store connects on its first call.
"""

from __future__ import annotations

import msgspec
import pytest

from app.config import load_settings
from app.errors import ConfigError
from app.settings import StateSettings
from app.state import RedisStateStore, open_state_store


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("redis://127.0.0.1:6379/0", "redis 127.0.0.1:6379/0"),
        ("redis://:pa55word@cache.internal:6380/3", "redis cache.internal:6380/3"),
        ("redis://kb:pa55word@cache.internal", "redis cache.internal:6379/0"),
        ("rediss://kb:pa55word@cache.internal:6390/1", "redis cache.internal:6390/1 (tls)"),
        ("unix:///run/redis/redis.sock?db=4", "redis unix:/run/redis/redis.sock/4"),
    ],
)
def test_a_redis_store_describes_where_it_is_without_the_password(url: str, described: str) -> None:
    store = RedisStateStore.from_url(url, StateSettings())

    assert store.description == described
    assert "pa55word" not in store.description


def test_a_url_that_is_not_a_redis_url_is_a_config_error_that_does_not_repeat_it() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL is not a Redis URL") as caught:
        RedisStateStore.from_url("http://kb:pa55word@cache.internal:6379", StateSettings())

    assert "pa55word" not in caught.value.message


def test_redis_url_chooses_the_redis_store() -> None:
    settings = load_settings(
        environ={"REDIS_URL": "redis://cache.internal:6379/5", "KB_DATA_DIR": "/nonexistent"}
    )

    store = open_state_store(settings)

    assert isinstance(store, RedisStateStore)
    assert store.description == "redis cache.internal:6379/5"


def test_the_namespace_and_timeouts_come_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "KB_STATE__NAMESPACE": "staging",
            "KB_STATE__TIMEOUT_S": "0.25",
            "KB_DATA_DIR": "/nonexistent",
        }
    )

    assert settings.state.namespace == "staging"
    assert settings.state.timeout_s == 0.25


@pytest.mark.parametrize(
    "fields",
    [
        {"namespace": "kb:prod"},  # the separator would let one namespace read into another
        {"namespace": ""},
        {"namespace": "x" * 65},
        {"timeout_s": 0},
        {"timeout_s": 60},
        {"connect_timeout_s": -1},
        {"file": ""},
    ],
)
def test_state_settings_out_of_range_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(fields, StateSettings)
