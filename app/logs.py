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

import io
import logging
import re
import sys
from typing import Any, TextIO

import structlog
from opentelemetry import trace

__all__ = ["add_trace_id", "configure_logging", "ensure_logging", "logging_configured", "mask_secrets"]

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


# API keys (``kb_<id>_<secret>``, ``app.access.hashing``): the id stays, it names the key in
# listings; the secret goes. Any other bearer token goes whole. Fields that hold credentials go.
_API_KEY = re.compile(r"\b(kb_[0-9a-f]{12}_)[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?!kb_[0-9a-f]{12}_\*{3})[^\s\"',;]+")
_CREDENTIAL_FIELDS = {"authorization", "proxy-authorization", "x-api-key", "x_api_key", "api_key", "apikey"}
_MASK = "***"
# E-mail addresses: the mailbox goes, the domain stays (it says which organisation, not who).
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b")


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        masked = _BEARER.sub(rf"\g<1>{_MASK}", _API_KEY.sub(rf"\g<1>{_MASK}", value))
        return _EMAIL.sub(rf"{_MASK}@\g<1>", masked)
    if isinstance(value, dict):
        return {
            k: _MASK if isinstance(k, str) and k.lower() in _CREDENTIAL_FIELDS else _masked(v)
            for k, v in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(_masked(item) for item in value)
    if value is None or isinstance(value, bool | int | float):
        return value
    # Rendered as its repr anyway (a headers object, an exception): masked if that holds a secret.
    shown = repr(value)
    hidden = _masked(shown)
    return value if hidden == shown else hidden


def mask_secrets(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Processor: API keys, bearer tokens and credential fields never reach a log line, and
    e-mail addresses reach it without their mailbox (``***@example.com``).

    ``exc_info`` is left to the renderer (it needs the exception itself); a traceback rendered
    as text (JSON lines) is masked like any other string.
    """
    return {k: v if k == "exc_info" else _masked(v) for k, v in event_dict.items()}


def _console_tracebacks() -> structlog.typing.ExceptionRenderer:
    """structlog's choice, without the values of local variables: they may hold credentials."""
    if structlog.dev.default_exception_formatter is structlog.dev.rich_traceback:
        return structlog.dev.RichTracebackFormatter(show_locals=False)
    return structlog.dev.default_exception_formatter


def _masked_traceback(formatter: structlog.typing.ExceptionRenderer) -> structlog.typing.ExceptionRenderer:
    def render(out: TextIO, exc_info: structlog.typing.ExcInfo) -> None:
        text = io.StringIO()
        formatter(text, exc_info)
        out.write(_masked(text.getvalue()))

    return render


def add_trace_id(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Processor: the OpenTelemetry trace id of the span current where the line is written (a
    request's server span, when tracing is on), so that a request's lines and its trace join on
    it. Read from the context, like the request id, so code that logs need not pass it."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
    return event_dict


def _shared_processors() -> list[structlog.types.Processor]:
    """What every line gets, whether it came from structlog or from stdlib ``logging``."""
    return [
        structlog.contextvars.merge_contextvars,
        add_trace_id,
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
        finish: list[structlog.types.Processor] = [
            structlog.processors.format_exc_info,
            mask_secrets,
            renderer,
        ]
    else:
        # The renderer formats tracebacks itself: masked once they are text.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=_masked_traceback(_console_tracebacks())
        )
        finish = [mask_secrets, renderer]
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
