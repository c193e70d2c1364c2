"""IoT data collection: sensors publish readings to a topic with bounded retention; one
subscriber group keeps running aggregates, another stores readings in batches, and a group
created later replays everything the topic still retains.

    python examples/iot.py publish 600 --bad 2     # 600 readings from 6 sensors, 2 unreadable
    streamwork worker iot:app --burst              # from examples/: both groups catch up
    python examples/iot.py replay                  # a new group reads the retained readings
    python examples/iot.py report                  # per-sensor averages, rows stored

- Retention: the topic keeps about the last 1,000 readings (max_len; Redis trims whole
  nodes, so a few more), never one a group has not handled yet.
- `store` is a batch subscriber: up to 100 readings per call, one write each. A batch with
  an unreadable reading raises; streamwork then runs its readings one by one, so the 99
  good ones are stored and the bad one alone is retried and dead-lettered — one bad sensor
  value never dead-letters its neighbours.
- Delivery is at least once: a reading can be handled twice after a worker dies, so
  `store` writes rows keyed by the message id (a set), and `aggregate` counts each message
  id once.

Redis: $STREAMWORK_REDIS_URL. Stored rows go to $IOT_STORE (default readings.csv).
"""

from __future__ import annotations

import os
import random
import sys

from streamwork import App, Message
from streamwork.testing import run_until_idle

app = App()
TOPIC = "sensors.readings"
app.topic(TOPIC, max_len=1000, max_age=None)
STORE = os.environ.get("IOT_STORE", "readings.csv")
SENSORS = [f"sensor-{n}" for n in range(6)]


def _value(message: Message) -> float:
    value = message.payload["celsius"]
    if not isinstance(value, (int, float)):
        raise ValueError(f"unreadable value {value!r} from {message.payload['sensor']}")
    return float(value)


@app.subscriber(TOPIC, group="aggregate", start="beginning", max_retries=0)
def aggregate(message: Message) -> None:
    """Running count and sum per sensor, each message counted once (SADD is the guard)."""
    sensor = message.payload["sensor"]
    redis = app.connection.redis
    if not redis.sadd("iot:aggregated", message.id):
        return  # a redelivery: already counted
    value = message.payload["celsius"]
    if not isinstance(value, (int, float)):
        redis.hincrby("iot:unreadable", sensor, 1)
        return
    pipe = redis.pipeline()
    pipe.hincrby("iot:count", sensor, 1)
    pipe.hincrbyfloat("iot:sum", sensor, value)
    pipe.execute()


@app.subscriber(TOPIC, group="store", start="beginning", batch_size=100, batch_wait=0.5,
                max_retries=1)  # fmt: skip
def store(messages: list[Message]) -> None:
    rows = [f"{m.id},{m.payload['sensor']},{_value(m):.2f}\n" for m in messages]
    with open(STORE, "a") as out:  # validated first: a bad batch writes nothing
        out.write("".join(rows))


def publish(count: int, bad: int) -> None:
    rng = random.Random(5)
    unreadable = set(rng.sample(range(count), bad))
    readings = [
        {
            "sensor": SENSORS[n % len(SENSORS)],
            "celsius": "ERR" if n in unreadable else round(rng.gauss(21.0, 2.0), 2),
        }
        for n in range(count)
    ]
    app.publish_many(TOPIC, readings)
    print(f"published {count} readings ({bad} unreadable) to {TOPIC!r}")


def replay() -> None:
    """A group created now, from the beginning: it reads what the topic still retains."""
    late = App(app.url)
    late.topic(TOPIC, max_len=1000, max_age=None)
    seen: list[str] = []
    late.subscriber(TOPIC, group="audit", start="beginning")(lambda m: seen.append(m.id))
    run_until_idle(late, topics=[TOPIC])
    stream = late.topic_keys(TOPIC).stream
    retained = late.connection.redis.xlen(stream)
    print(f"new group 'audit' replayed {len(seen)} readings; the topic retains {retained}")
    # A group that is not read any more would hold the topic's retention back: remove it.
    late.connection.redis.xgroup_destroy(stream, "audit")


def report() -> None:
    redis = app.connection.redis
    counts, sums = redis.hgetall("iot:count"), redis.hgetall("iot:sum")
    for sensor in SENSORS:
        count = int(counts.get(sensor.encode(), 0))
        mean = float(sums.get(sensor.encode(), 0)) / count if count else 0.0
        print(f"  {sensor}: {count} readings, mean {mean:.2f} °C")
    unreadable = sum(int(v) for v in redis.hvals("iot:unreadable"))
    with open(STORE) as stored:
        rows = stored.read().splitlines()
    ids = {row.split(",")[0] for row in rows}
    dead = redis.xlen(app.topic_source(TOPIC, "store").dead_letters)
    print(f"aggregated {sum(int(v) for v in counts.values())} readings, {unreadable} unreadable")
    print(f"stored {len(ids)} readings ({len(rows)} rows); {dead} dead-lettered by 'store'")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["publish", count]:
            publish(int(count), 0)
        case ["publish", count, "--bad", bad]:
            publish(int(count), int(bad))
        case ["replay"]:
            replay()
        case ["report"]:
            report()
        case _:
            sys.exit(f"usage: {sys.argv[0]} publish N [--bad K] | replay | report")
