"""The service's log lines: text or JSON (``LOG_FORMAT``), each carrying the request and the run
it belongs to.

Context travels in context variables rather than through every call: the HTTP middleware
(``backend.observability.http``) sets the request id for the duration of a request, and the
runner calls ``bind_run_id`` at the start of a run's task, so every line logged while serving
that request or executing that run carries ``request_id`` / ``run_id`` (asyncio tasks inherit
the context they were created in). ``ContextFilter`` copies them onto each record at the
service's handler, so library loggers (uvicorn, SQLAlchemy, httpx) get them too.

``configure_logging`` installs one stderr handler on the root logger, unless the host (a test
runner, an application embedding the service) configured logging itself; ``uvicorn_log_config``
is the same setup for uvicorn's workers, with uvicorn's own access log replaced by the one line
per request of ``backend.observability.http``.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

HANDLER_NAME = "mgx"
REQUEST_ID: ContextVar[str | None] = ContextVar("mgx_request_id", default=None)
RUN_ID: ContextVar[str | None] = ContextVar("mgx_run_id", default=None)

# Record attributes written after the message (text) or as JSON fields, in this order.
CONTEXT_FIELDS = ("request_id", "run_id")
# Set by the access log line (``extra=``); JSON only, the text line says them in its message.
ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms", "client")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def bind_run_id(run_id: uuid.UUID | str) -> None:
    """Tag every log line of the current task, and of the tasks it starts, with ``run_id``."""
    RUN_ID.set(str(run_id))


@contextmanager
def run_log_context(run_id: uuid.UUID | str) -> Iterator[None]:
    """``run_id`` on the lines logged inside the block only: for code that handles one run after
    another in a long-lived task (a runner worker), where ``bind_run_id`` would outstay the run."""
    token = RUN_ID.set(str(run_id))
    try:
        yield
    finally:
        RUN_ID.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``run_id`` (None when unset) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "run_id", None) is None:
            record.run_id = RUN_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """``2025-01-31 12:00:00,123 INFO backend.access GET /tasks/ 200 3.1ms request_id=... run_id=...``"""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        context = " ".join(f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None)))
        return f"{line} {context}" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, pid, the
    request and run context when present, the access fields on access lines, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in (*CONTEXT_FIELDS, *ACCESS_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def build_formatter(log_format: LogFormat = "text") -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: LogFormat = "text", *, stream: TextIO | None = None) -> None:
    """Log to stderr at ``level`` in ``log_format``, unless the host already configured logging.

    Idempotent: a second call (another app in the same process) only updates the format and the
    levels of the handler the first one installed.
    """
    root = logging.getLogger()
    handler = next((existing for existing in root.handlers if existing.get_name() == HANDLER_NAME), None)
    if handler is None and not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.set_name(HANDLER_NAME)
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
        root.setLevel(level)
        _route_uvicorn_through_root()
    if handler is not None:
        handler.setFormatter(build_formatter(log_format))
    logging.getLogger("backend").setLevel(level)
    logging.getLogger("mgx_agent").setLevel(level)
    # Alembic announces its context on every schema check (readiness probes); we log migrations ourselves.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    # httpx logs every LLM request URL at INFO: noise next to the run events and metrics that
    # record each call; DEBUG shows them.
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _route_uvicorn_through_root() -> None:
    """uvicorn's loggers write through the service's handler; its access log is replaced by ours.
    (When started as ``uvicorn backend.app.main:app``, uvicorn configured them with its own.)"""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def uvicorn_log_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """``logging.config.dictConfig`` settings for uvicorn (and each of its worker processes):
    the service's handler on the root logger, uvicorn's loggers through it, no uvicorn access log."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {HANDLER_NAME: {"()": f"{__name__}.build_formatter", "log_format": log_format}},
        "handlers": {
            HANDLER_NAME: {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": HANDLER_NAME,
                "filters": ["context"],
            }
        },
        "root": {"handlers": [HANDLER_NAME], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": True, "level": "WARNING"},
        },
    }
