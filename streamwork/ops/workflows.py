"""A workflow's children, as the CLI's `workflow show` and the console's Workflows page show
them: for each child sent and not finished, its own status (queued, running with its
progress, retrying), read in one round trip. It reads; it never changes a workflow.
"""

from __future__ import annotations

from typing import Any

from .._app.app import App
from .._base import protocol
from .._lifecycle.lifecycle import parse_status
from .._redis import commands
from .._workflows.handle import WorkflowStatus


def child_states(app: App, status: WorkflowStatus) -> dict[int, dict[str, Any]]:
    """The status of each child sent and not finished (when the app tracks status)."""
    sent = [node for node in status.nodes if node.state == "sent"]
    if not sent or not app.track_status:
        return {}
    keys = []
    for node in sent:
        assert node.queue is not None and node.message_id is not None
        keys.append(app.keys(node.queue).status(node.message_id))
    with app.connection.translate_errors():
        replies = commands.read_hashes(app.connection.redis, keys)  # one round trip
    found = {}
    now = protocol.now_ms()
    for node, raw in zip(sent, replies, strict=True):
        child = parse_status(raw, now)
        found[node.index] = {
            "state": child.state,
            "attempts": child.attempts,
            "progress": child.progress,
            "error": child.error,
        }
    return found
