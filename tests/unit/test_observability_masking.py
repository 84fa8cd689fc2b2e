"""E-mail addresses never reach a log line whole, whichever way they are logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from app.logs import configure_logging
from tests.services.logging_state import logging_restored

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "console"])
def test_an_email_address_loses_its_mailbox_in_events_fields_and_library_records(
    json_lines: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=json_lines)
    log = structlog.get_logger("kb.test")

    log.info("question", question="why does jane.doe+kb@example.co.uk get no answer?")
    log.info("feedback", by={"email": "ops.lead@corp.example"}, cc=["x_y@sub.corp.example"])
    logging.getLogger("uvicorn.error").warning("mail to %s bounced", "bob@mail.example.org")

    err = capsys.readouterr().err
    for mailbox in ("jane.doe+kb@", "ops.lead@", "x_y@", "bob@"):
        assert mailbox not in err
    for domain in ("example.co.uk", "corp.example", "sub.corp.example", "mail.example.org"):
        assert f"***@{domain}" in err


def test_prompt_versions_and_other_at_signs_are_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_lines=True)

    structlog.get_logger("kb.test").info("answered", prompt="answer@v2", note="meet @ noon", ref="a@b")

    err = capsys.readouterr().err
    assert '"prompt": "answer@v2"' in err and '"note": "meet @ noon"' in err and '"ref": "a@b"' in err
