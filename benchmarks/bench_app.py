"""The app the benchmarks run: no-op tasks taking one small argument, and a topic.

Worker processes started by benchmarks/run.py import it as `bench_app:app`; the namespace
comes from $STREAMWORK_BENCH_NAMESPACE so a benchmark never touches other keys.
"""

from __future__ import annotations

import os
import time
from typing import Any

from streamwork import App, Message

app = App(namespace=os.environ.get("STREAMWORK_BENCH_NAMESPACE", "swbench"))


@app.task(queue="sync")
def noop_sync(n: int) -> None:
    pass


@app.task(queue="async")
async def noop_async(n: int) -> None:
    pass


@app.task(queue="floor")
async def floor(n: int) -> None:
    """Never run: its messages are drained by run.py's own loop (the status-steps floor)."""


@app.task(queue="one_partition")
async def noop_one_partition(n: int) -> None:
    pass


@app.task(queue="partitioned", partitions=6)
async def noop_partitioned(n: int) -> None:
    pass


@app.task(queue="async")
async def count(values: list[Any]) -> int:
    """A chord's callback: how many header results it received."""
    return len(values)


FAIR_ORDER: list[str] = []
"""The keys of the fair task's runs, in the order they ran (an in-process drain)."""


@app.task(queue="fair", fair_by="customer")
async def fair_noop(n: int, customer: str) -> None:
    FAIR_ORDER.append(customer)


RATE = "200/s"


@app.task(queue="limited", rate_limit=RATE)
async def noop_limited(n: int) -> None:
    pass


# The same no-op with message status off (App(track_status=False)): what status costs.
untracked_app = App(
    namespace=os.environ.get("STREAMWORK_BENCH_NAMESPACE", "swbench"), track_status=False
)


@untracked_app.task(queue="untracked")
async def noop_untracked(n: int) -> None:
    pass


@app.task(queue="latency", store_result=True, bind=True)
async def timed(message: Message, sent_ns: int) -> int:
    """Returns how long after its send the handler started, in nanoseconds."""
    return time.time_ns() - sent_ns


@app.task(queue="recovery", bind=True)
def stuck_once(message: Message, marker: str) -> None:
    """Records its start; the first run then hangs until its worker is killed."""
    with open(marker, "a") as log:
        log.write(f"{time.time()} {os.getpid()}\n")
    if not message.redelivered:
        time.sleep(3600)


for group in ("billing", "shipping", "notify"):
    app.subscriber("fanout", group=group)(lambda message: None)


# The features of the second wave, each on a queue of its own, set so that they never hold a
# message back: what they cost a drain when they are only bookkeeping.
events_app = App(namespace=os.environ.get("STREAMWORK_BENCH_NAMESPACE", "swbench"), events=True)


@events_app.task(queue="evented")
async def noop_evented(n: int) -> None:
    pass


@app.task(queue="rated", rate_limit="1000000/s")
async def noop_rated(n: int) -> None:
    pass


@app.task(queue="slotted", concurrency_limit=1_000_000)
async def noop_slotted(n: int) -> None:
    pass


@app.task(queue="keyed")
async def noop_keyed(n: int) -> None:
    """Sent with a partition key each (benchmarks/run.py: 1,000 keys in turn)."""


@app.task(queue="banded", priority="high")
async def noop_banded(n: int) -> None:
    pass


@app.task(queue="scheduled")
async def noop_scheduled(n: int) -> None:
    pass


for number in range(10):
    app.schedule(f"bench-{number}", noop_scheduled, every=1, args=(number,))
