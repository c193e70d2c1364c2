"""Build streamwork's Grafana dashboards as JSON: `python grafana/generate.py` rewrites
grafana/dashboards/*.json from the definitions below.

The committed JSON is what users import; tests/system/test_observability.py fails when it
differs from what this file generates, and evaluates every query here against a real
Prometheus scraping a real worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
Q = 'queue=~"$queue"'


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    description: str = "",
    kind: str = "timeseries",
    width: int = 12,
    height: int = 8,
) -> dict[str, Any]:
    """A panel; its id and position are set when the dashboard is laid out."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
    }


def row(title: str) -> dict[str, Any]:
    """A full-width row header grouping the panels after it."""
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "datasource": DATASOURCE,
        "targets": [],
        "panels": [],
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Number the panels and place them left to right, row by row (24 columns)."""
    x = y = row_height = 0
    for number, item in enumerate(panels, start=1):
        width, height = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + width > 24:
            x, y = 0, y + row_height
            row_height = 0
        item["id"] = number
        item["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        x += width
        row_height = max(row_height, height)
    return panels


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard(
    uid: str, title: str, variables: list[dict[str, Any]], panels: list[dict[str, Any]]
) -> dict[str, Any]:
    datasource = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
    }
    return {
        "uid": uid,
        "title": title,
        "tags": ["streamwork"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [datasource, *variables]},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(panels),
    }


def by_outcome(task_filter: str, by: str = "") -> list[tuple[str, str]]:
    group = f" by ({by})" if by else ""
    legend = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"sum{group} (rate(streamwork_tasks_{name}_total{{{task_filter}}}[{RATE}]))",
            f"{legend}{name.replace('_', '-')}",
        )
        for name in ("succeeded", "failed", "retried", "dead_lettered")
    ]


def percentiles(metric: str, label_filter: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(streamwork_{metric}_bucket{{{label_filter}}}[{RATE}])))",
            f"p{int(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def overview() -> dict[str, Any]:
    queue_var = variable("queue", "Queue / topic", "label_values(streamwork_backlog, queue)")
    panels = [
        panel("Throughput by outcome", by_outcome(Q), unit="ops",
              description="Handler runs finishing per second, by outcome."),
        panel("Error ratio", [(
            f"sum(rate(streamwork_tasks_failed_total{{{Q}}}[{RATE}])) / "
            f"clamp_min(sum(rate(streamwork_tasks_started_total{{{Q}}}[{RATE}])), 1e-9)",
            "failed / started")], unit="percentunit"),
        panel("Run time percentiles", percentiles("task_run_seconds", Q), unit="s"),
        panel("Wait time percentiles (ready → handler start)",
              percentiles("task_wait_seconds", Q), unit="s"),
        panel("Backlog", [(f"sum by (queue, group) (streamwork_backlog{{{Q}}})",
                           "{{queue}} {{group}}")],
              description="A queue's ready messages; a subscriber group's lag."),
        panel("Arrival rate λ", [(
            f"sum by (queue) (rate(streamwork_entries_added_total{{{Q}}}[{RATE}]))",
            "{{queue}}")], unit="ops"),
        panel("Little's law: measured wait W vs backlog / arrival rate (L/λ)", [
            (f"sum by (queue) (rate(streamwork_task_wait_seconds_sum{{{Q},group=\"\"}}[{RATE}]))"
             f" / sum by (queue) (rate(streamwork_task_wait_seconds_count{{{Q},group=\"\"}}"
             f"[{RATE}]))", "{{queue}} measured W"),
            (f"sum by (queue) (streamwork_backlog{{{Q},group=\"\"}}) / sum by (queue) "
             f"(clamp_min(rate(streamwork_entries_added_total{{{Q}}}[{RATE}]), 1e-9))",
             "{{queue}} L/λ"),
        ], unit="s", width=24,
            description="Little's law L = λW: in a steady queue the two lines agree. L/λ "
            "above the measured wait means the backlog is growing faster than workers drain "
            "it — add workers (needed concurrency ≈ λ x average run time)."),
        panel("Dead letters", [(f"sum by (queue, group) (streamwork_dead_letters{{{Q}}})",
                                "{{queue}} {{group}}")]),
        panel("Pending and oldest pending age", [
            (f"sum by (queue, group) (streamwork_pending{{{Q}}})", "{{queue}} {{group}} pending"),
            (f"max by (queue, group) (streamwork_oldest_pending_age_seconds{{{Q}}})",
             "{{queue}} {{group}} oldest age (s)"),
        ]),
        panel("In flight", [(f"sum by (queue) (streamwork_tasks_in_flight{{{Q}}})",
                             "{{queue}}")]),
        panel("Delayed and scheduled retries", [
            (f"sum by (queue, group) (streamwork_delayed{{{Q}}})", "{{queue}} {{group}}")]),
        panel("Worker processes and restarts", [
            ("sum(streamwork_worker_processes)", "processes"),
            (f"sum(increase(streamwork_worker_restarts_total[{RATE}])) or vector(0)",
             "restarts"),
        ]),
        panel("Lost ownership and lost entries", [
            (f"sum(increase(streamwork_lost_ownership_total[{RATE}])) or vector(0)",
             "outcomes dropped (frozen worker)"),
            (f"sum(increase(streamwork_lost_entries_total[{RATE}])) or vector(0)",
             "entries deleted while pending"),
        ], description="Both should stay at 0; see docs/guides/delivery.md (When a worker dies)."),
        row("Schedules"),
        panel("Schedule ticks by outcome", [(
            f"sum by (schedule, outcome) (increase(streamwork_schedule_ticks_total[{RATE}]))",
            "{{schedule}} {{outcome}}")],
            description="Ticks enqueued; skipped (overlap=False, the previous run still "
            "queued or running); missed (no worker served the schedule's queue in time)."),
        panel("Schedules: time since last run, and period", [
            ("max by (schedule) (time() - streamwork_schedule_last_run_timestamp_seconds)",
             "{{schedule}} since last run"),
            ("max by (schedule) (streamwork_schedule_period_seconds)", "{{schedule}} period"),
        ], unit="s",
            description="A schedule whose time since last run passes twice its period is "
            "not being ticked: no worker serves its queue (alert StreamworkScheduleNotRunning)."),
        row("Flow control"),
        panel("Held back before running, by reason", [(
            f"sum by (queue, reason) (increase(streamwork_held_back_total{{{Q}}}[{RATE}]))",
            "{{queue}} {{reason}}")],
            description="Messages a rate limit (rate) or a concurrency limit (concurrency) "
            "held back, and those their handler handed back (rate_limited: it raised "
            "RateLimited). Never attempts: nothing is retried or dead-lettered for it."),
        panel("Backlog by priority band", [(
            f"sum by (queue, band) (streamwork_band_backlog{{{Q}}})", "{{queue}} {{band}}")],
            description="Queues with priority bands: each band's ready messages. Workers "
            "take higher bands first; a band waiting past max_starvation is taken first."),
        panel("Partitioned queues: backlog and running, by partition", [
            (f"sum by (queue, partition) (streamwork_partition_backlog{{{Q}}})",
             "{{queue}}~{{partition}} ready"),
            (f"sum by (queue, partition) (streamwork_partition_pending{{{Q}}})",
             "{{queue}}~{{partition}} running"),
        ], description="Queues declared with partitions=N: each partition's ready and "
            "running messages. Sends without a partition key go round-robin, so partitions "
            "stay level; one far above the others holds a hot partition key."),
        panel("Fair queues: backlog of the top keys", [(
            f"sum by (queue, key) (streamwork_fair_backlog{{{Q}}})", "{{queue}} {{key}}")],
            description="Fair tasks (fair_by): the 10 keys with the largest backlog per queue, "
            "and (other) for the rest. Workers serve keys round-robin."),
        panel("Waiting for a concurrency slot", [(
            f"sum by (queue) (streamwork_held{{{Q}}})", "{{queue}}")],
            description="Messages of tasks with concurrency_limit waiting in Redis for a "
            "slot; a slot frees at each outcome, or a visibility timeout after its worker "
            "died."),
        panel("Batch handlers: messages per batch", [(
            f"sum by (queue, task) (rate(streamwork_batch_messages_sum{{{Q}}}[{RATE}])) / "
            f"sum by (queue, task) (rate(streamwork_batch_messages_count{{{Q}}}[{RATE}]))",
            "{{queue}} {{task}}")], width=24,
            description="Tasks and subscribers with batch_size: the average number of "
            "messages per call. Well below batch_size: batch_wait passes before a batch "
            "fills (little traffic, or a short batch_wait)."),
        row("Workflows"),
        panel("Workflows started and ended", [
            (f"sum by (kind) (increase(streamwork_workflows_started_total[{RATE}]))",
             "started ({{kind}})"),
            (f"sum by (outcome) (increase(streamwork_workflows_finished_total[{RATE}]))",
             "{{outcome}}"),
        ], width=24,
            description="Workflows (chain, group, chord) sent, and ended: done, failed (a child "
            "dead-lettered or cancelled under on_failure=\"fail\"), cancelled, or resumed (a "
            "replayed child succeeded). Started is counted by the sending process, so it shows "
            "only where producers are scraped; the others by workers."),
    ]  # fmt: skip
    return dashboard("streamwork-overview", "streamwork — overview", [queue_var], panels)


def task_drilldown() -> dict[str, Any]:
    task_var = variable("task", "Task", "label_values(streamwork_tasks_started_total, task)")
    t = 'task=~"$task"'
    panels = [
        panel("Runs by outcome", by_outcome(t, "task"), unit="ops", width=24),
        panel("Run time percentiles", percentiles("task_run_seconds", t), unit="s"),
        panel("Wait time percentiles", percentiles("task_wait_seconds", t), unit="s"),
        panel("Starts per second", [(
            f"sum by (task) (rate(streamwork_tasks_started_total{{{t}}}[{RATE}]))",
            "{{task}}")], unit="ops"),
        panel("Error ratio", [(
            f"sum by (task) (rate(streamwork_tasks_failed_total{{{t}}}[{RATE}])) / "
            f"clamp_min(sum by (task) (rate(streamwork_tasks_started_total{{{t}}}[{RATE}])), "
            "1e-9)", "{{task}}")], unit="percentunit"),
        panel("Average run time", [(
            f"sum by (task) (rate(streamwork_task_run_seconds_sum{{{t}}}[{RATE}])) / "
            f"clamp_min(sum by (task) (rate(streamwork_task_run_seconds_count{{{t}}}[{RATE}])), "
            "1e-9)", "{{task}}")], unit="s"),
        panel("Cancellations", [(
            f"sum by (task) (increase(streamwork_runs_cancelled_total{{{t}}}[{RATE}]))",
            "{{task}}")],
            description="Messages cancelled (handle.cancel(), streamwork cancel): settled "
            "unrun, or stopped while running. Never counted as failures."),
        panel("Busy handlers (λ x run time)", [(
            f"sum by (task) (rate(streamwork_task_run_seconds_sum{{{t}}}[{RATE}]))",
            "{{task}}")],
            description="Average handlers busy running this task: the concurrency it uses."),
        panel("In flight", [(
            f"sum by (task) (streamwork_tasks_in_flight{{{t}}})", "{{task}}")],
            description="Messages of this task running now, summed over every worker "
            "process: compare with Busy handlers, its average."),
    ]  # fmt: skip
    return dashboard("streamwork-task", "streamwork — task drill-down", [task_var], panels)


DASHBOARDS = {"streamwork-overview.json": overview, "streamwork-task.json": task_drilldown}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


METRICS_REFERENCE = HERE.parent / "docs" / "reference" / "metrics.md"


def main() -> None:
    for name, build in DASHBOARDS.items():
        (HERE / "dashboards" / name).write_text(render(build))
        print(f"wrote grafana/dashboards/{name}")
    from streamwork.ops.metrics import reference_markdown

    METRICS_REFERENCE.write_text(reference_markdown())
    print("wrote docs/reference/metrics.md")


if __name__ == "__main__":
    main()
