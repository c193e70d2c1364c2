"""Run the port end to end in one process: the chord, a routed message that expires, the
scheduled task; a worker in this process runs them (`run_until_idle`) and stores the
schedule, as `streamwork worker` does.

    python examples/from_celery/run.py
"""

from __future__ import annotations

import tasks

from streamwork import chord, group
from streamwork.testing import run_until_idle

# Celery: chord(group(fetch_price.s(s) for s in PRICES), average.s())()
workflow = chord(group(tasks.fetch_price.s(s) for s in tasks.PRICES), tasks.average.s()).send()
# Celery: notify.apply_async(args=("prices updated",), queue="lopri", expires=3600)
notice = tasks.notify.send_with(args=("prices updated",), queue="lopri", expires=3600)
report = tasks.nightly_report.send()  # Celery: nightly_report.delay(), or wait for 2 am

summary = run_until_idle(tasks.app, advance_time=True)  # GLOBEX's retry waits 2 s: skipped
print("average:", workflow.result(timeout=10))  # Celery: result.get(timeout=30)
print("notified:", tasks.notified, "from queue", notice.queue)
print("report:", report.status().state)
schedule = tasks.app.get_schedule("nightly-report")  # stored by the worker as it started
print("nightly-report next at", f"{schedule.next_run:%H:%M} UTC, cron {schedule.cron!r}")
print(f"ran {summary.ran} messages, {summary.retried} retried, {summary.dead} dead")
