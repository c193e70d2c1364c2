"""Short sync handlers run several messages to a pool thread; on both backends each message
still has its own outcome, status, progress and result."""

from streamwork import dead_letters, execution, tracing
from streamwork.execution import Runner
from streamwork.stats import queue_state
from streamwork.testing import run_until_idle


def test_chunked_sync_runs_keep_per_message_outcomes(app, monkeypatch):
    sizes = []
    chunked = Runner.run_chunk

    async def counting(self, runs, submit):
        sizes.append(len(runs))
        return await chunked(self, runs, submit)

    monkeypatch.setattr(Runner, "run_chunk", counting)
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
