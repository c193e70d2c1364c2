"""Hello World on RabbitMQ with pika: the classic first message-queue program, for reading
side by side with examples/hello.py, its streamwork counterpart.

    python examples/pika_hello.py          # send one message, then receive it

| pika (RabbitMQ)                                    | streamwork (Redis Streams)              |
|----------------------------------------------------|-----------------------------------------|
| `pika.BlockingConnection(ConnectionParameters(h))` | `App(url)` (connects on first use)      |
| `channel.queue_declare(queue="hello")`             | `@app.task(queue="hello")` declares it  |
| `channel.basic_publish("", "hello", body)`         | `hello.send(body)`                      |
| `channel.basic_consume("hello", callback)`         | the decorated function is the consumer  |
| `channel.start_consuming()`                        | `streamwork worker hello:app`           |
| `auto_ack=True` / `basic_ack` in the callback      | `ack_mode="auto"` / the default "late"  |

RabbitMQ: $RABBITMQ_URL, else amqp://guest:guest@localhost:5672/%2F; the queue is
$PIKA_QUEUE (default "hello"), deleted at the end.
"""

from __future__ import annotations

import os

import pika

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F")
QUEUE = os.environ.get("PIKA_QUEUE", "hello")


def main() -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    channel.queue_declare(queue=QUEUE)
    channel.basic_publish(exchange="", routing_key=QUEUE, body=b"Hello World!")
    print(" [x] Sent 'Hello World!'", flush=True)

    def callback(channel: object, method: object, properties: object, body: bytes) -> None:
        print(f" [x] Received {body.decode()!r}", flush=True)
        connection.add_callback_threadsafe(channel.stop_consuming)  # type: ignore[attr-defined]

    channel.basic_consume(queue=QUEUE, on_message_callback=callback, auto_ack=True)
    print(" [*] Waiting for messages", flush=True)
    channel.start_consuming()
    channel.queue_delete(queue=QUEUE)
    connection.close()


if __name__ == "__main__":
    main()
