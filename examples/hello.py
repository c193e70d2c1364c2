"""Hello World: the first message-queue program, streamwork's take on RabbitMQ's pika tutorial.

A producer declares the queue `hello` and sends "Hello World!"; a consumer prints what it
receives. Run both halves in one go (a worker in burst mode stops once the queue is empty):

    python examples/hello.py

or as two programs, the way it runs in production:

    python examples/hello.py send
    streamwork worker hello:app --burst     # from the examples/ directory

Redis: $STREAMWORK_REDIS_URL, else redis://localhost:6379/0.
"""

from __future__ import annotations

import asyncio
import sys

from streamwork import App, Worker
from streamwork.ops.stats import queue_state

app = App()


@app.task(queue="hello")
def hello(body: str) -> None:
    print(f" [x] Received {body!r}", flush=True)


def send() -> None:
    handle = hello.send("Hello World!")
    print(f" [x] Sent 'Hello World!' (message {handle.id})", flush=True)


def consume() -> None:
    print(" [*] Waiting for messages; the burst worker exits when the queue is empty", flush=True)
    asyncio.run(Worker(app, ["hello"]).run(burst=True))
    state = queue_state(app, "hello")
    print(f" [*] Queue 'hello' now: {state.ready} ready, {state.pending} pending", flush=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "both"
    if command in ("send", "both"):
        send()
    if command in ("consume", "both"):
        consume()
    if command not in ("send", "consume", "both"):
        sys.exit(f"usage: {sys.argv[0]} [send|consume|both]")
