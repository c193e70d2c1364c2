"""Fan-out: each order-created event reaches billing, shipping and notifications.

One topic, three subscriber groups. Every group receives every event; inside a group the
events are shared between its workers. Run it with two worker processes, so each group
has two consumers:

    python examples/fanout.py publish 12                   # the shop publishes 12 events
    streamwork worker fanout:app --processes 2 --burst     # from examples/: handle them all
    python examples/fanout.py report                       # every group is caught up

The groups start "from the beginning", so a group that did not exist yet when events were
published still handles every event the topic retains (one day, by default).
"""

from __future__ import annotations

import os
import sys
import time

from streamwork import App, Message
from streamwork.ops.stats import topic_states

app = App()
TOPIC = "orders.created"
app.topic(TOPIC, max_age=3600)  # keep events an hour, never one a group has not handled


def show(group: str, message: Message, what: str) -> None:
    time.sleep(0.02)  # a little work, so both processes get a share
    # One write per line: sync handlers run on several threads, and print() writes a line
    # and its newline separately, so two threads' lines could interleave.
    order = message.payload["order_id"]
    sys.stdout.write(f"  {group:<13} pid {os.getpid():<7} order {order}: {what}\n")
    sys.stdout.flush()


@app.subscriber(TOPIC, group="billing", start="beginning")
def bill(message: Message) -> None:
    show("billing", message, f"charged {message.payload['total']:.2f} EUR")


@app.subscriber(TOPIC, group="shipping", start="beginning")
def ship(message: Message) -> None:
    show("shipping", message, f"label printed for {message.payload['city']}")


@app.subscriber(TOPIC, group="notifications", start="beginning")
async def notify(message: Message) -> None:
    show("notifications", message, f"mail sent to {message.payload['email']}")


def publish(count: int) -> None:
    cities = ["Lyon", "Porto", "Ghent", "Turku"]
    events = [
        {"order_id": n, "total": 9.5 * n, "city": cities[n % 4], "email": f"c{n}@example.com"}
        for n in range(1, count + 1)
    ]
    app.publish_many(TOPIC, events)  # one pipelined round trip
    print(f"published {count} events to topic {TOPIC!r}", flush=True)


def report() -> None:
    [state] = topic_states(app, [TOPIC])
    print(f"topic {TOPIC!r} retains {state.length} events", flush=True)
    for group in state.groups:
        caught_up = group.lag == 0 and group.pending == 0
        print(
            f"  group {group.group:<13} lag {group.lag}, pending {group.pending}, "
            f"dead letters {group.dead_letters}" + ("  (caught up)" if caught_up else ""),
            flush=True,
        )


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["publish"]:
            publish(12)
        case ["publish", count]:
            publish(int(count))
        case ["report"]:
            report()
        case _:
            sys.exit(f"usage: {sys.argv[0]} publish [COUNT] | report")
