"""Short sync handlers run several messages to a pool thread; on both backends each message
still has its own outcome, status, progress and result."""

import pytest

from streamwork._base import tracing
from streamwork._worker import execution
from streamwork._worker.execution import Runner
from streamwork.ops import dead_letters
from streamwork.ops.stats import queue_state
from streamwork.testing import run_until_idle


@pytest.fixture
def sizes(monkeypatch):
    """The size of every chunk run (Runner.run_chunk, counted)."""
    found = []
    chunked = Runner.run_chunk

    async def counting(self, runs, submit):
        found.append(len(runs))
        return await chunked(self, runs, submit)

    monkeypatch.setattr(Runner, "run_chunk", counting)
    return found


def test_chunked_sync_runs_keep_per_message_outcomes(app, monkeypatch, sizes):
    # Chunking depends on measured handler times (a loaded machine can make a no-op's
    # hand-off take milliseconds) and is off while runs are traced (an earlier test may
    # have set a TracerProvider): take both out of this test.
    monkeypatch.setattr(execution, "CHUNK_SECONDS", 1.0)
    monkeypatch.setattr(tracing, "active", lambda: False)

    @app.task(max_retries=0, store_result=True, bind=True)
    def square(message, n):
        if n == 77:
            raise ValueError("77 is unlucky")
        message.progress(1.0, note=f"squared {n}")
        return n * n

    handles = square.send_many([(n,) for n in range(300)])
    summary = run_until_idle(app)
    assert (summary.done, summary.dead) == (299, 1)
    assert max(sizes, default=0) > 1  # they did run several to a thread
    assert handles[5].result(timeout=1) == 25
    assert handles[5].status().note == "squared 5"
    assert handles[77].status().state == "failed"
    source = app.queue_source("default")
    [entry] = dead_letters.list_dead_letters(app.connection, source)
    assert entry.letter.error == "77 is unlucky"
    assert queue_state(app, "default").is_empty


def test_short_async_handlers_run_in_chunks_and_waiting_ones_overlap(app, monkeypatch, sizes):
    monkeypatch.setattr(execution, "ASYNC_CHUNK_BELOW", 0.01)  # a loaded machine: still short
    monkeypatch.setattr(tracing, "active", lambda: False)
    running, most = [0], [0]

    @app.task(max_retries=0, store_result=True, bind=True)
    async def double(message, n):
        if n == 13:
            raise ValueError("13 is unlucky")
        message.progress(1.0, note=f"doubled {n}")
        return 2 * n

    @app.task
    async def waits(n):
        import asyncio

        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.02)  # it awaits: never chunked, its runs overlap
        running[0] -= 1

    handles = double.send_many([(n,) for n in range(200)])
    waits.send_many([(n,) for n in range(40)])
    summary = run_until_idle(app)
    assert (summary.done, summary.dead) == (239, 1)
    assert max(sizes, default=0) > 1
    assert handles[7].result(timeout=1) == 14 and handles[7].status().note == "doubled 7"
    assert handles[13].status().state == "failed"
    assert most[0] > 1
