"""Order processing and Little's law: L = λW, and peak shaving.

A shop takes λ = 100 orders a second and each order takes about one second to process, so
about L = λW = 100/s x 1 s = 100 orders are in the system at any moment (waiting or being
processed) — provided the workers can run 100 at once. This program starts a worker (one
process, 300 orders at once), sends orders at a steady rate, measures λ, W and how many
orders are in the system, and prints Little's law next to what it saw. Then it sends a
burst of 5,000 orders within one second — far more than the workers take — and prints the
backlog each half second: the queue absorbs the peak and the workers drain it at their own
pace, the backlog back to 0 (peak shaving: the shop's front end never waited).

    python examples/order_flow.py [--rate 100] [--seconds 8] [--burst 5000]

Redis: $STREAMWORK_REDIS_URL, else redis://localhost:6379/0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from streamwork import App
from streamwork.ops.stats import flow, queue_state
from streamwork.testing import free_port

app = App()
HANDLING_SECONDS = 1.0
BURST_HANDLING_SECONDS = 0.2


@app.task(queue="checkout")
async def place_order(order_id: int) -> None:
    await asyncio.sleep(HANDLING_SECONDS)  # payment, stock, invoice: about a second


@app.task(queue="checkout-burst")
async def place_rush_order(order_id: int) -> None:
    await asyncio.sleep(BURST_HANDLING_SECONDS)


def _env() -> dict[str, str]:
    """This process's environment, with examples/ on the path (for MODULE:APP)."""
    here = Path(__file__).resolve().parent
    return {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def start_worker() -> subprocess.Popen[bytes]:
    """`streamwork worker` in a subprocess (one process, 300 orders at once), once ready:
    its /readyz answers 200 when every worker process serves."""
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "streamwork", "worker", "order_flow:app", "-p", "1", "-c", "300",
         "--metrics-port", str(port), "--metrics-address", "127.0.0.1"],
        env=_env(),
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return worker
        except OSError:
            if time.monotonic() > deadline or worker.poll() is not None:
                worker.kill()
                sys.exit("the worker did not start")
            time.sleep(0.1)


def steady(rate: float, seconds: float) -> None:
    """Send `rate` orders a second for `seconds`; measure over the last part of it."""
    print(f"== steady load: λ = {rate:g} orders/s, each taking ~{HANDLING_SECONDS:g} s")
    tick = 0.1
    started = time.monotonic()
    sent = 0
    before = None
    in_system: list[int] = []
    warm_up = min(2.5, seconds / 3)
    cli: subprocess.Popen[str] | None = None
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(rate * elapsed) + 1
        if due > sent:
            place_order.send_many([(n,) for n in range(sent, due)])
            sent = due
        if elapsed >= warm_up:
            state = queue_state(app, "checkout")
            before = before or state
            in_system.append(state.ready + state.pending)
            if cli is None:  # what `streamwork stats` says over the same load
                interval = max(1.0, seconds - warm_up - 1.0)
                cli = subprocess.Popen(
                    [sys.executable, "-m", "streamwork", "stats", "order_flow:app",
                     "--interval", str(interval), "--json"],
                    env=_env(), stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
        time.sleep(tick)
    after = queue_state(app, "checkout")
    measured = flow(before, after) if before else None
    if measured is None or measured.wait is None or measured.run_time is None:
        sys.exit("not enough runs to measure: run it longer (--seconds)")
    lam, wait, run = measured.arrival_rate, measured.wait, measured.run_time
    little = lam * (wait + run)
    observed = sum(in_system) / len(in_system)
    print(f"arrival rate        λ = {lam:7.1f} orders/s")
    print(
        f"time in system      W = {wait + run:7.3f} s  ({wait:.3f} s waiting + {run:.3f} s running)"
    )
    print(f"Little's law    L = λW = {little:7.1f} orders in the system")
    print(
        f"observed            L = {observed:7.1f} orders in the system (ready + running, averaged)"
    )
    print(f"agreement           {observed / little:7.1%}")
    if cli is not None:
        shown = json.loads(cli.communicate(timeout=60)[0])
        (queue,) = [q for q in shown["queues"] if q["queue"] == "checkout"]
        total = queue["expected_backlog"] + queue["busy_handlers"]
        print(
            f"streamwork stats    λ = {queue['arrival_rate']:.1f}/s, L = λW = "
            f"{queue['expected_backlog']:.1f} waiting + λS = {queue['busy_handlers']:.1f} "
            f"running = {total:.1f} in the system"
        )
    deadline = time.monotonic() + 30
    while not queue_state(app, "checkout").is_empty and time.monotonic() < deadline:
        time.sleep(0.1)


def burst(count: int) -> None:
    print(f"== peak shaving: {count} orders within one second")
    started = time.monotonic()
    for chunk in range(10):
        place_rush_order.send_many(
            [(n,) for n in range(chunk * count // 10, (chunk + 1) * count // 10)]
        )
        time.sleep(max(0.0, started + (chunk + 1) * 0.1 - time.monotonic()))
    print(f"sent {count} orders in {time.monotonic() - started:.2f} s")
    peak = 0
    while True:
        state = queue_state(app, "checkout-burst")
        backlog = state.ready + state.pending
        peak = max(peak, backlog)
        at = time.monotonic() - started
        print(f"  t = {at:5.1f} s   backlog {state.ready:5d}   running {state.pending:4d}")
        if state.is_empty:
            break
        time.sleep(0.5)
    took = time.monotonic() - started
    print(
        f"drained {count} orders in {took:.1f} s at the workers' pace ({count / took:.0f}/s); "
        f"peak backlog {peak}; backlog now 0"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Little's law and peak shaving, measured.")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--burst", type=int, default=5000)
    options = parser.parse_args()
    app.purge("checkout")
    app.purge("checkout-burst")
    worker = start_worker()
    try:
        steady(options.rate, options.seconds)
        burst(options.burst)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


if __name__ == "__main__":
    main()
