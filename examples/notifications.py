"""Social push notifications: one event fans out to the email, SMS and push channels, each
at the rate its provider allows.

    python examples/notifications.py publish 30    # 30 "someone liked your post" events
    streamwork worker notifications:app            # from examples/; Ctrl-C once all are sent
    python examples/notifications.py report        # per channel: how many, how fast

(Not `--burst`: a burst worker does not wait for the messages a rate limit holds back.)

Each channel is a subscriber group of the topic, so each receives every event, and each has
its own `rate_limit` — enforced across all workers before a message runs (a message held
back is not an attempt and is never dead-lettered): email 20/s, SMS 5/s (the SMS gateway's
contract), push 50/s. A slow channel never slows the others: each group has its own
backlog.

Redis: $STREAMWORK_REDIS_URL. The "sent" log goes to $NOTIFY_LOG (default sent.log).
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict

from streamwork import App, Message

app = App()
TOPIC = "social.liked"
LOG = os.environ.get("NOTIFY_LOG", "sent.log")
RATES = {"email": "20/s", "sms": "5/s", "push": "50/s"}


def deliver(channel: str, message: Message) -> None:
    event = message.payload
    with open(LOG, "a") as log:  # one write per line: handlers run on several threads
        log.write(f"{time.time():.3f} {channel} {event['user']} {message.id}\n")


@app.subscriber(TOPIC, group="email", rate_limit=RATES["email"], start="beginning")
def email(message: Message) -> None:
    deliver("email", message)


@app.subscriber(TOPIC, group="sms", rate_limit=RATES["sms"], start="beginning")
def sms(message: Message) -> None:
    deliver("sms", message)


@app.subscriber(TOPIC, group="push", rate_limit=RATES["push"], start="beginning")
async def push(message: Message) -> None:
    deliver("push", message)


def publish(count: int) -> None:
    app.publish_many(TOPIC, [{"user": f"user-{n}", "by": "ada"} for n in range(count)])
    print(f"published {count} events to {TOPIC!r}")


def report() -> None:
    sent: dict[str, list[float]] = defaultdict(list)
    with open(LOG) as log:
        for line in log:
            at, channel, *_ = line.split()
            sent[channel].append(float(at))
    for channel, rate in RATES.items():
        times = sorted(sent[channel])
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        took = times[-1] - times[0] if len(times) > 1 else 0.0
        print(
            f"  {channel:<5} {len(times):3d} sent in {took:5.2f} s; "
            f"at most {busiest} in any one second (limit {rate})"
        )


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["publish", count]:
            publish(int(count))
        case ["report"]:
            report()
        case _:
            sys.exit(f"usage: {sys.argv[0]} publish N | report")
