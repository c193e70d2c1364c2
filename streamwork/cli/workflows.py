"""`streamwork workflow show MODULE:APP ID [--json]` and `streamwork workflow cancel
MODULE:APP ID [--reason R]`: a workflow's tree, with each node's state, from the command line.

Thin, like the rest of the CLI: it reads the workflow record through the _workflows package and, for
children that were sent and have not finished, their own status (queued, running with its
progress, retrying), then prints. Added to the `streamwork` command group by main.py.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .._base import protocol
from .._workflows.handle import NodeStatus, WorkflowStatus
from .._workflows.nodes import UnknownWorkflow
from ..ops.workflows import child_states
from .app import app_for_command


def _check_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not protocol.ID.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a workflow id ({protocol.ID_RULE})")
    return value


@click.group()
def workflow() -> None:
    """Look at and cancel workflows (chain, group, chord)."""


@workflow.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("workflow_id", metavar="ID", callback=_check_id)
@click.option("--json", "as_json", is_flag=True, help="Print it as one JSON object.")
def show(app_spec: str, workflow_id: str, as_json: bool) -> None:
    """Show workflow ID as a tree: each node's kind, task, message id and state."""
    app = app_for_command(app_spec)
    status = app.workflow(workflow_id).status()
    if status.state == "unknown":
        raise UnknownWorkflow(f"no workflow {workflow_id}: never sent, or it expired")
    children = child_states(app, status)
    if as_json:
        click.echo(json.dumps(_as_dict(status, children)))
        return
    finished = "" if status.finished_at is None else f", ended {status.finished_at:%H:%M:%S}"
    click.echo(f"workflow {status.id}  {status.kind}  {status.state}{finished}")
    if status.error:
        click.echo(f"failed by: {status.error}")
    if status.reason:
        click.echo(f"reason: {status.reason}")
    for line in _tree(status, children):
        click.echo(line)


@workflow.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("workflow_id", metavar="ID", callback=_check_id)
@click.option("--reason", default=None, help="Why (kept in the workflow and its children).")
def cancel(app_spec: str, workflow_id: str, reason: str | None) -> None:
    """Cancel workflow ID: nothing more starts; children not finished are cancelled."""
    app = app_for_command(app_spec)
    what = app.workflow(workflow_id).cancel(reason)
    if what == "unknown":
        raise UnknownWorkflow(f"no workflow {workflow_id}: never sent, or it expired")
    click.echo("cancelled" if what == "cancelled" else "not cancelled: it had already ended")


def _state(node: NodeStatus, children: dict[int, dict[str, Any]]) -> str:
    child = children.get(node.index)
    if child is None:
        state = node.state
        if node.failed is not None:
            state += f"  {node.failed.error_type}: {node.failed.error}"
            if node.absorbed:
                state += "  (passed on to the callback)"
        return state
    state = str(child["state"])
    if child["progress"] is not None:
        state += f" {child['progress']:.0%}"
    if child["attempts"] > 1:
        state += f" (attempt {child['attempts']})"
    if child["error"]:
        state += f"  {child['error']}"
    return state


def _label(node: NodeStatus) -> str:
    if node.kind == "task":
        return f"{node.task}  [{node.queue}]  {node.message_id}"
    if node.kind == "chord":
        return f"chord (on_failure={node.on_failure})"
    return node.kind


def _tree(status: WorkflowStatus, children: dict[int, dict[str, Any]]) -> list[str]:
    lines: list[str] = []

    def walk(index: int, prefix: str, is_last: bool, is_root: bool) -> None:
        node = status.nodes[index]
        branch = "" if is_root else ("└─ " if is_last else "├─ ")
        lines.append(f"{prefix}{branch}{_label(node)}  {_state(node, children)}")
        inner = prefix if is_root else prefix + ("   " if is_last else "│  ")
        for position, child in enumerate(node.children):
            walk(child, inner, position == len(node.children) - 1, False)

    walk(0, "", True, True)
    return lines


def _as_dict(status: WorkflowStatus, children: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": status.id,
        "state": status.state,
        "kind": status.kind,
        "created_at": None if status.created_at is None else status.created_at.isoformat(),
        "finished_at": None if status.finished_at is None else status.finished_at.isoformat(),
        "reason": status.reason,
        "error": status.error,
        "nodes": [
            {
                "index": node.index,
                "kind": node.kind,
                "state": node.state,
                "parent": node.parent,
                "children": list(node.children),
                "task": node.task,
                "queue": node.queue,
                "message_id": node.message_id,
                "on_failure": node.on_failure,
                "error": None
                if node.failed is None
                else f"{node.failed.error_type}: {node.failed.error}",
                "absorbed": node.absorbed,
                "message": children.get(node.index),
            }
            for node in status.nodes
        ],
    }
