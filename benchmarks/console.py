"""The web console on a big dead-letter stream: how long its pages take with N dead letters.

    python3 benchmarks/console.py [--dead-letters 1000000]

Starts its own redis-server on a free port, fills one queue's dead-letter stream with N
copies of a real dead letter (pipelined XADD), then times each page through the ASGI test
client, against the baseline of the same run: one raw `XREVRANGE dlq + - COUNT 50` (what a
page must read at least). A page's time should not grow with N: it reads one page (at most
2,000 entries for a search), never the stream.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Any

from starlette.testclient import TestClient

from streamwork import App
from streamwork.testing import RedisServer, run_until_idle
from streamwork.web import asgi_app


def timed(call: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead-letters", type=int, default=1_000_000)
    count = parser.parse_args().dead_letters
    server = RedisServer().start()
    try:
        app = App(server.url)

        @app.task(max_retries=0)
        def declined(order: int) -> None:
            raise ValueError(f"card declined for order {order}")

        declined.send(0)
        run_until_idle(app)
        client = app.connection.redis
        key = app.keys("default").dead_letters
        ((_, fields),) = client.xrange(key)
        for start in range(1, count, 10_000):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(10_000, count - start)):
                pipe.xadd(key, fields)
            pipe.execute()
        memory = client.info("memory")["used_memory_human"]
        print(f"{client.xlen(key):,} dead letters ({memory} of Redis memory)")
        baseline = timed(lambda: client.xrevrange(key, "+", "-", count=50))
        print(f"baseline: XREVRANGE COUNT 50: {baseline * 1000:.2f} ms")
        web = TestClient(asgi_app(app))
        web.get("/")  # the overview's first visit takes two looks 0.5 s apart
        first = web.get("/dead-letters/default").text
        older = re.search(r'id="older" href="([^"]+)"', first)
        assert older is not None
        pages = {
            "overview": "/",
            "dead letters, newest page": "/dead-letters/default",
            "dead letters, next page": "/dead-letters/default"
            + older.group(1).replace("&amp;", "&"),
            "search, error text that matches": "/dead-letters/default?q=declined",
            "search, nothing matches (2,000 read)": "/dead-letters/default?q=no-such-text",
            "one dead letter": "/dead-letters/default/"
            + client.xrevrange(key, count=1)[0][0].decode(),
        }
        print(f"{'page':<40} {'ms':>8} {'x baseline':>11}")
        for name, path in pages.items():
            assert web.get(path).status_code == 200
            seconds = timed(lambda path=path: web.get(path))
            print(f"{name:<40} {seconds * 1000:>8.1f} {seconds / baseline:>11.1f}")
        app.close()
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
