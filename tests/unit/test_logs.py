"""One structured logger: structlog events and stdlib records of any library come out alike."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from app.logs import configure_logging, ensure_logging, logging_configured

pytestmark = pytest.mark.unit

_TOUCHED = ("kb", "app", "ingest", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def pristine_logging() -> Iterator[None]:
    """Each test starts with logging not configured by us, and leaves it as it found it."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in _TOUCHED}
    saved_propagate = {n: logging.getLogger(n).propagate for n in _TOUCHED}
    saved_structlog = structlog.get_config()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "kb-structured"]
    yield
    root.handlers[:], _ = saved_root
    root.setLevel(saved_root[1])
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = saved_propagate[name]
    structlog.configure(**saved_structlog)


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_a_library_warning_through_stdlib_logging_comes_out_as_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json_lines=True)

    logging.getLogger("sentence_transformers").warning("model %s is not cached", "MiniLM")

    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "model MiniLM is not cached"
    assert line["level"] == "warning"
    assert line["logger"] == "sentence_transformers"
    assert line["timestamp"].endswith("Z")


def test_service_events_and_library_records_share_one_shape(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_lines=True)

    structlog.get_logger("kb.pipeline").info("answered", total_ms=12.5)
    logging.getLogger("anthropic").error("connection reset")

    service, library = json_lines(capsys.readouterr().err)
    assert service == {
        "event": "answered",
        "total_ms": 12.5,
        "level": "info",
        "logger": "kb.pipeline",
        "timestamp": service["timestamp"],
    }
    assert library.keys() == {"event", "level", "logger", "timestamp"}


def test_whatever_is_bound_to_the_context_is_in_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_lines=True)

    with structlog.contextvars.bound_contextvars(request_id="req-7", path="/ask"):
        structlog.get_logger("kb.retrieval").warning("retrieval_timeout")
        logging.getLogger("asyncio").error("Task was destroyed but it is pending!")
    logging.getLogger("asyncio").error("after the request")

    inside_a, inside_b, after = json_lines(capsys.readouterr().err)
    assert inside_a["request_id"] == inside_b["request_id"] == "req-7"
    assert inside_a["path"] == inside_b["path"] == "/ask"
    assert "request_id" not in after


def test_a_library_traceback_stays_inside_its_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_lines=True)
    try:
        raise ConnectionError("store went away")
    except ConnectionError as exc:
        # What asyncio logs for an abandoned future whose exception nobody retrieved.
        logging.getLogger("asyncio").error("Future exception was never retrieved", exc_info=exc)

    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "Future exception was never retrieved"
    assert line["exception"].startswith("Traceback")
    assert "ConnectionError: store went away" in line["exception"]


def test_outside_production_lines_are_readable_key_value_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_lines=False)

    structlog.get_logger("kb.pipeline").info("answered", total_ms=12.5)
    logging.getLogger("sentence_transformers").warning("slow start")

    service, library = capsys.readouterr().err.splitlines()
    assert "answered" in service and "[kb.pipeline]" in service and "total_ms=12.5" in service
    assert "[warning  ]" in library and "slow start" in library and "[sentence_transformers]" in library


def test_library_chatter_below_warning_stays_out_the_services_info_does_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json_lines=True)

    logging.getLogger("httpx").info("HTTP Request: POST https://api.anthropic.com/v1/messages")
    structlog.get_logger("kb.services").info("store_opened")
    structlog.get_logger("kb.services").debug("not at the configured level")

    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["store_opened"]


def test_uvicorn_records_are_taken_from_its_own_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler())  # what uvicorn's default log config does
    logging.getLogger("uvicorn").propagate = False

    configure_logging(json_lines=True)
    uvicorn_error.warning("Invalid HTTP request received.")

    (line,) = json_lines(capsys.readouterr().err)
    assert line["logger"] == "uvicorn.error" and line["level"] == "warning"


def test_configuring_again_replaces_the_handler_instead_of_adding_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json_lines=False)
    configure_logging(json_lines=True)
    configure_logging(json_lines=True)

    logging.getLogger("asyncio").error("once")

    assert [h.get_name() for h in logging.getLogger().handlers].count("kb-structured") == 1
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["once"]


def test_ensure_logging_sets_up_once_and_keeps_an_existing_setup(capsys: pytest.CaptureFixture[str]) -> None:
    assert not logging_configured()
    ensure_logging(json_lines=True)
    assert logging_configured()

    ensure_logging(json_lines=False)  # what a second app factory call does
    logging.getLogger("asyncio").error("still json")

    assert json_lines(capsys.readouterr().err)[0]["event"] == "still json"
