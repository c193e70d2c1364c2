"""Log lines stay one line per event, whatever text a message carries."""

import json
import logging

from streamwork._base import logs


def record(message, *args, **extra):
    entry = logging.LogRecord("streamwork.x", logging.INFO, __file__, 1, message, args, None)
    entry.__dict__.update(extra)
    return entry


def test_text_log_escapes_control_characters_in_messages():
    formatter = logs.TextFormatter(logs.TEXT_FORMAT)
    line = formatter.format(record("task %s done", "job\n2026 INFO forged\x1b[2J"))
    assert "\n" not in line and "\x1b" not in line
    assert "job\\n2026 INFO forged\\x1b[2J" in line


def test_json_log_escapes_control_characters_in_messages_and_fields():
    formatter = logs.JsonFormatter()
    line = formatter.format(record("task %s", "a\rb", task="t\x07"))
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "task a\\rb"
    assert data["task"] == "t\\x07"
