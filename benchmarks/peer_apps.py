"""The same no-op task for each peer (Celery, RQ, Dramatiq, arq), and a way to serve it.

    python peer_apps.py serve rq|dramatiq|arq|celery     # a worker until SIGTERM

Each task takes one small argument; `latency_probe` pushes how long after its send it
started (ns) to a Redis list, which the benchmark waits on with BLPOP.
"""

from __future__ import annotations

import os
import sys
import time

import redis

URL = os.environ.get("STREAMWORK_REDIS_URL", "redis://localhost:6379/0")
PREFIX = os.environ.get("STREAMWORK_BENCH_NAMESPACE", "swbench") + ":peer"
LATENCY_KEY = f"{PREFIX}:latency"
_redis = redis.Redis.from_url(URL)


def noop(n: int) -> None:
    pass


def latency_probe(sent_ns: int) -> None:
    _redis.rpush(LATENCY_KEY, time.time_ns() - sent_ns)


# -- Dramatiq ------------------------------------------------------------------------------
try:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq_broker = RedisBroker(url=URL, namespace=f"{PREFIX}:dramatiq")
    dramatiq.set_broker(dramatiq_broker)
    dramatiq_noop = dramatiq.actor(noop, actor_name="noop", queue_name="bench", max_retries=0)
    dramatiq_probe = dramatiq.actor(
        latency_probe, actor_name="probe", queue_name="bench", max_retries=0
    )
except ImportError:  # not installed: that peer is skipped
    dramatiq = None

# -- Celery --------------------------------------------------------------------------------
try:
    from celery import Celery

    celery_app = Celery("peer_apps", broker=URL)
    celery_app.conf.update(task_default_queue=f"{PREFIX}:celery", worker_hijack_root_logger=False)
    celery_noop = celery_app.task(noop, name="noop", ignore_result=True)
    celery_probe = celery_app.task(latency_probe, name="probe", ignore_result=True)
except ImportError:
    Celery = None


# -- arq -----------------------------------------------------------------------------------
async def arq_noop(ctx: dict, n: int) -> None:
    pass


async def arq_probe(ctx: dict, sent_ns: int) -> None:
    latency_probe(sent_ns)


def arq_settings():
    from arq.connections import RedisSettings

    return RedisSettings.from_dsn(URL)


ARQ_QUEUE = f"{PREFIX}:arq"


def serve(peer: str) -> None:
    if peer == "rq":
        from rq import Queue, SimpleWorker

        worker = SimpleWorker([Queue(f"{PREFIX}-rq", connection=_redis)], connection=_redis)
        worker.work(logging_level="WARNING")
    elif peer == "dramatiq":
        worker = dramatiq.Worker(dramatiq_broker, worker_threads=8)
        worker.start()
        import signal

        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        worker.stop()
    elif peer == "arq":
        from arq.worker import Worker

        Worker(
            functions=[arq_noop, arq_probe], redis_settings=arq_settings(), queue_name=ARQ_QUEUE,
            max_jobs=100, handle_signals=True,
        ).run()  # fmt: skip
    elif peer == "celery":
        celery_app.worker_main(["worker", "--pool", "solo", "--loglevel", "WARNING"])


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2])
