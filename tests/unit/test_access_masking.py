"""API keys and bearer tokens never reach a log line, whichever way they are logged."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest
import structlog

from app.access.hashing import new_key
from app.logs import configure_logging
from tests.services.logging_state import logging_restored

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "console"])
def test_a_key_logged_in_an_event_a_field_a_header_or_a_library_record_is_masked(
    json_lines: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=json_lines)
    key_id, key = new_key()
    password, token = secrets.token_urlsafe(8), secrets.token_urlsafe(8)  # not in this source file
    log = structlog.get_logger("kb.test")

    log.info(f"checking {key}")
    log.info("request", headers={"Authorization": f"Bearer {key}", "X-API-Key": password}, keys=[key])
    log.info("token", authorization=f"Bearer {token}", raw=(key,))
    logging.getLogger("uvicorn.error").warning("client sent %s", f"Authorization: Bearer {key}")
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        log.exception("failed")

    err = capsys.readouterr().err
    assert key not in err
    assert key.split("_", 2)[2] not in err  # not even the secret part
    assert password not in err and token not in err
    assert f"kb_{key_id}_***" in err  # the id stays: it names the key in listings


def test_text_without_secrets_is_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_lines=True)

    structlog.get_logger("kb.test").info("answered", prompt="answer@v2", tokens=42, bearing="north-east")

    err = capsys.readouterr().err
    assert '"prompt": "answer@v2"' in err and '"tokens": 42' in err and '"bearing": "north-east"' in err
