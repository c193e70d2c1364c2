"""The backlog autoscalers read (streamwork.ops.backlog) is the same on Redis and on
memory://: what waits in streams, fair lists and delayed sets, and due schedules."""

from streamwork._base import protocol
from streamwork.ops.backlog import backlog
from streamwork.testing import run_until_idle


def test_what_waits_is_counted_and_what_ran_is_not(app):
    @app.task(fair_by="customer")
    def bill(customer, n):
        pass

    @app.task(queue="later")
    def later():
        pass

    app.schedule("hourly", later, every=3600)
    for n in range(6):
        bill.send("a" if n < 4 else "b", n)
    later.send_with(delay=30)
    found = backlog(app).as_dict()["queues"]
    assert found["default"]["total"] == 6
    assert (found["later"]["due"], found["later"]["schedules"]) == (0, 1)

    protocol.advance_clock(31_000)
    assert backlog(app).as_dict()["queues"]["later"]["due"] == 1
    run_until_idle(app)
    assert backlog(app).total == 0
