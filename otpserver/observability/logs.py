"""Log records as text or JSON lines, with the request id, and client input made harmless.

One set-up serves every process that runs the app: `python -m otpserver` hands
`logging_config` to uvicorn, which applies it in the supervisor and in each worker, and
`otpserver.asgi.build` applies the same when another server imports the app.

Anything a client sent (a path, a header) can reach a log line, so every control
character in a record's message and fields is escaped: a path with `%0a` cannot forge a
second line, nor `%1b` send an escape sequence to the operator's terminal.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import re
import time
from typing import Any

from pydantic_core import to_json

from otpserver.settings.operations import LogFormat

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "otpserver_request_id", default=None
)
"""The id of the request being served in this task, for every line logged on its behalf."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Attributes every LogRecord has (and uvicorn's terminal-coloured copy of its message);
# anything else was passed in `extra=` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def escape_control(text: str) -> str:
    """`text` with every control character (and Unicode line separator) written as an escape."""
    # Control characters and line separators are never printable, and nearly every line
    # is printable throughout: one C loop over it then replaces a regular-expression pass.
    if text.isprintable():
        return text
    return _CONTROL.sub(_escape, text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message [request_id=...] key=value ...`, control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        message = escape_control(record.getMessage())
        parts = [f"{record.levelname} {record.name}: {message}"]
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            parts.append(f"request_id={escape_control(str(request_id))}")
        for key, value in _fields(record).items():
            if key != "request_id":
                parts.append(f"{key}={escape_control(_plain(value))}")
        line = " ".join(parts)
        if record.exc_info:
            # The traceback spans lines by nature; its text comes from the code, and an
            # exception message carrying client input is escaped like any message.
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `json.dumps` escapes every control character itself."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in _fields(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return _JSON.encode(document)


_JSON = json.JSONEncoder(default=str, ensure_ascii=True, separators=(",", ":"))
"""One encoder for every line: `json.dumps` with options builds a new one per call."""


def _plain(value: object) -> str:
    if isinstance(value, str):
        return value
    # pydantic-core's encoder is several times faster than `json` on an audit event; the
    # text line is escaped afterwards, so the UTF-8 it leaves unescaped is harmless.
    return to_json(value, fallback=str).decode()


def logging_config(log_format: LogFormat = "text", level: str = "INFO") -> dict[str, Any]:
    """The `logging.config.dictConfig` of every server process (uvicorn's `log_config`).

    uvicorn's own loggers pass through the same handler; its access log stays off because
    `otpserver.observability.requests` writes one with the request id and escaped input.
    httpx logs each request's full URL at INFO, and a provider URL may carry a token in
    its query, so it is held to warnings (the senders log their own failures safely).
    """
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"otpserver": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "otpserver",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure_logging(log_format: LogFormat = "text", level: str = "INFO") -> None:
    """Apply `logging_config`, unless this process's root logger is already set up by the
    server (the same configuration) or by an embedding application or test runner."""
    root = logging.getLogger()
    if not root.handlers:
        logging.config.dictConfig(logging_config(log_format, level))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if all(isinstance(h.formatter, (TextFormatter, JsonFormatter)) for h in root.handlers):
        skip_unused_record_fields()


def skip_unused_record_fields() -> None:
    """Stop `logging` from gathering what neither formatter prints, for every record.

    A record otherwise looks up its caller's file and line by walking the stack, and
    reads the thread, process and multiprocessing names: together more work than the
    formatting itself on a request that logs an audit event. The logging HOWTO's
    "Optimization" section names these switches. Only called when this module's formatters
    write every line, so no embedding application's format loses a field it prints.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
