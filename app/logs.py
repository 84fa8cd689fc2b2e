"""One structured logger for the service and for every library it uses.

structlog events and stdlib ``logging`` records (asyncio, uvicorn, sentence-transformers, the
Anthropic SDK and its HTTP client, ...) all end in one handler on the root logger, whose
``structlog.stdlib.ProcessorFormatter`` renders them alike: JSON lines in production, readable
lines otherwise, each with a timestamp, level, logger name and whatever is bound to the context
(the middleware binds the request id, so every line written while a request is handled has it).

The service's own loggers (``kb.*``; stdlib ones under ``app`` or ``ingest``) log at the
configured level; libraries log warnings and errors only, so their per-request chatter (an HTTP
client's line for each call) stays out.

Configure once per process, in the entry point: ``configure_logging`` (re)installs the set-up,
replacing its own handler rather than adding another; ``ensure_logging`` does so only if
nothing has yet, which is what an app factory may call.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging", "ensure_logging", "logging_configured"]

_HANDLER_NAME = "kb-structured"
# The service's own loggers: structlog's are named ``kb.*``; stdlib ones would be module names.
_SERVICE_LOGGERS = ("kb", "app", "ingest")
# Libraries that install handlers of their own (uvicorn does so when it starts): their records
# are handed to the root handler instead, so they come out structured and only once.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at set-up (a test's
    captured stream, a redirected one)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _drop_formatting_leftovers(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """``ExtraAdder`` copies a record's non-standard attributes; another handler that formatted
    the same record first (pytest's, a library's) leaves these two behind."""
    event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    return event_dict


def _shared_processors() -> list[structlog.types.Processor]:
    """What every line gets, whether it came from structlog or from stdlib ``logging``."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(*, json_lines: bool, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging through one structured handler on the root logger.

    Calling it again replaces that handler (a different format or level), never adds a second.
    """
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a later configure_logging (or structlog.testing.capture_logs) must apply to
        # the module-level loggers too.
        cache_logger_on_first_use=False,
    )
    renderer: structlog.types.Processor
    if json_lines:
        renderer = structlog.processors.JSONRenderer()
        # JSON has no room for a multi-line traceback: it becomes the "exception" string.
        finish: list[structlog.types.Processor] = [structlog.processors.format_exc_info, renderer]
    else:
        finish = [structlog.dev.ConsoleRenderer(colors=False)]  # renders tracebacks itself
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder(), _drop_formatting_leftovers],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
    )
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in _SERVICE_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in _OWN_HANDLERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True


def logging_configured() -> bool:
    return any(h.get_name() == _HANDLER_NAME for h in logging.getLogger().handlers)


def ensure_logging(*, json_lines: bool, level: int = logging.INFO) -> None:
    """``configure_logging``, unless the process has configured logging already."""
    if not logging_configured():
        configure_logging(json_lines=json_lines, level=level)
