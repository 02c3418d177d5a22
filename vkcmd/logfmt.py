"""Logging: one line per event on stderr, logfmt or JSON, secrets redacted.

Structured fields travel on a record as ``record.fields`` (a dict), the way the
``fsm`` trace observer sends them; :func:`fields` builds that ``extra`` for any
other caller. Field names that look like credentials are never printed.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from fsm.observers import FIELDS_ATTR

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"(token|password|passwd|secret|authorization|bearer|private|credential|key_data|cert_data)",
                          re.IGNORECASE)
_BARE = re.compile(r"^[^\s=\"\\]+$")


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` argument carrying structured fields: ``log.info("msg", extra=fields(pod=...))``."""
    return {FIELDS_ATTR: values}


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the values of credential-like field names replaced."""
    return {key: (REDACTED if _SECRET_NAME.search(key) else value) for key, value in values.items()}


def _level_name(record: logging.LogRecord) -> str:
    return record.levelname.lower().replace("warning", "warn")


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _base(record: logging.LogRecord) -> dict[str, Any]:
    values: dict[str, Any] = {"ts": _timestamp(record), "level": _level_name(record), "logger": record.name,
                              "msg": record.getMessage()}
    values.update(redact(getattr(record, FIELDS_ATTR, None) or {}))
    if record.exc_info:
        values["error"] = logging.Formatter().formatException(record.exc_info).replace("\n", " | ")
    return values


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=vkcmd.node msg="..." key=value`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _base(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_base(record), default=str, separators=(",", ":"))


def _logfmt_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else str(value)
    if text and _BARE.match(text):
        return text
    return json.dumps(text)


FORMATTERS = {"logfmt": LogfmtFormatter, "json": JsonFormatter}


def level_for(verbosity: int) -> int:
    """klog-style verbosity to a logging level: 0-3 info, 4 and up debug."""
    return logging.DEBUG if verbosity >= 4 else logging.INFO


def configure(verbosity: int, log_format: str, stream: TextIO | None = None) -> None:
    """Route every log line to ``stream`` (stderr) in ``log_format``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_for(verbosity))
    # Client libraries log request details at debug; only at high verbosity, never their bodies.
    quiet = logging.DEBUG if verbosity >= 6 else logging.ERROR
    for name in ("urllib3", "kubernetes"):
        logging.getLogger(name).setLevel(quiet)
