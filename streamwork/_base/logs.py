"""Log output for the command line: one line per event, as text or as JSON.

Records may carry `task`, `task_id` and `outcome` (passed as `extra=`); the JSON format
puts them in their own fields for log shippers. Control characters in a message (newlines,
terminal escapes — a task name read from a stream may carry any) are escaped, so one event
is always one line and nobody who can XADD can forge a log line. Never formats a URL
itself: callers pass URLs through `urls.redact` first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
FIELDS = ("task", "task_id", "outcome", "queue")

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """`text` with every control character written as an escape (\\n, \\x1b, ...)."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


class TextFormatter(logging.Formatter):
    """The text format, one line per event (a traceback, when there is one, follows it)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, message, and event fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "pid": record.process,
            "logger": record.name,
            "message": escape(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = escape(value) if isinstance(value, str) else value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send streamwork's (and the app's) logs to stderr at `level`, in `fmt`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
