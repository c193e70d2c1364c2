"""Order processing: a producer sends orders, a worker prices and confirms them.

    python examples/orders.py send 20                 # the shop front enqueues 20 orders
    streamwork worker orders:app --burst              # from examples/: process them all
    python examples/orders.py report                  # results, and the queue left empty

`process_order` stores its result, so the producer can wait for a confirmation; the
`notify_customer` task runs on a second queue with an async handler. An order with an
unknown product is rejected to the dead letters instead of being retried forever.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from streamwork import App, Reject
from streamwork.ops.stats import queue_state

app = App()

PRICES = {"book": 12.50, "pen": 1.20, "lamp": 34.00, "mug": 8.75}
HANDLES = Path(".orders-sent.json")  # in the current directory, between the two commands


@app.task(queue="orders", store_result=True, max_retries=5)
def process_order(order_id: int, customer: str, items: dict[str, int]) -> dict[str, object]:
    """Price an order and confirm it; the result is what the shop shows the customer."""
    unknown = [name for name in items if name not in PRICES]
    if unknown:
        raise Reject(f"order {order_id}: unknown product {unknown[0]!r}")
    total = round(sum(PRICES[name] * qty for name, qty in items.items()), 2)
    notify_customer.send(customer, f"order {order_id} confirmed: {total:.2f} EUR")
    return {"order_id": order_id, "customer": customer, "total": total, "status": "confirmed"}


@app.task(queue="notifications")
async def notify_customer(customer: str, text: str) -> None:
    print(f"  mail to {customer}: {text}", flush=True)


def send(count: int) -> None:
    rng = random.Random(7)
    orders = [
        (n, f"customer{n}@example.com", {rng.choice(list(PRICES)): rng.randint(1, 3)})
        for n in range(1, count + 1)
    ]
    handles = process_order.send_many(orders)  # one pipelined round trip
    HANDLES.write_text(json.dumps([h.id for h in handles]))
    print(f"sent {len(handles)} orders to queue 'orders'", flush=True)


def report() -> None:
    ids = json.loads(HANDLES.read_text()) if HANDLES.exists() else []
    total = 0.0
    for message_id in ids:
        handle = process_order.handle(message_id)
        result = handle.result(timeout=10)
        total += result["total"]
        print(f"  order {result['order_id']:>3}: {result['total']:8.2f} EUR {result['status']}")
    print(f"{len(ids)} orders confirmed, {total:.2f} EUR in all", flush=True)
    for queue in app.queues():
        state = queue_state(app, queue)
        print(
            f"queue {queue!r}: {state.ready} ready, {state.pending} pending, "
            f"{state.delayed} delayed, {state.dead_letters} dead letters"
            + ("  (empty)" if state.is_empty else ""),
            flush=True,
        )


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["send"]:
            send(20)
        case ["send", count]:
            send(int(count))
        case ["report"]:
            report()
        case _:
            sys.exit(f"usage: {sys.argv[0]} send [COUNT] | report")
