"""A rate limit changed at run time (`streamwork limits set`, Celery's `control rate_limit`)
holds on Redis and on memory://: a worker starts the task's runs under the override, `none`
lifts a declared limit, `reset` gives the declared one back; bad input is refused."""

import pytest

from streamwork import ConfigurationError, UnknownTask
from streamwork._base import protocol
from streamwork.ops import limits
from streamwork.testing import run_until_idle

from .timing import assert_sends_keep_the_rate


def test_an_override_slows_a_task_down(app):
    starts = []

    @app.task(rate_limit="1000/s")
    def job(n):
        starts.append(protocol.now_ms())

    shown = limits.set_rate(app, "job", "5/s")
    assert (shown.declared, shown.override, shown.in_force) == ("1000/s", "5/s", "5/s")
    assert_sends_keep_the_rate(app, job, starts, 10, per_second=5)


def test_none_lifts_a_declared_limit_and_reset_gives_it_back(app):
    ran = []

    @app.task(rate_limit="1/m")
    def job(n):
        ran.append(n)

    limits.set_rate(app, "job", "none")
    for n in range(5):
        job.send(n)
    assert run_until_idle(app).ran == 5  # 1/m would have held four of them back
    assert limits.reset(app, "job") is True and limits.reset(app, "job") is False
    [limit] = limits.show(app)
    assert (limit.override, limit.in_force) == (None, "1/m")
    for n in range(3):
        job.send(n)
    assert run_until_idle(app).ran == 1  # the declared 1/m again


def test_a_task_without_a_limit_gets_one(app):
    starts = []

    @app.task
    def free(n):
        starts.append(protocol.now_ms())

    limits.set_rate(app, "free", "4/s")
    assert_sends_keep_the_rate(app, free, starts, 6, per_second=4)


def test_bad_overrides_are_refused(app):
    app.queue("orders", partitions=2)

    @app.task
    def job():
        return None

    @app.task(queue="orders")
    def spread():
        return None

    @app.task(fair_by="customer")
    def fair(customer):
        return None

    with pytest.raises(UnknownTask, match="did you mean job"):
        limits.set_rate(app, "jobb", "5/s")
    with pytest.raises(ConfigurationError, match="rate_limit must look like"):
        limits.set_rate(app, "job", "fast")
    with pytest.raises(ConfigurationError, match="partitioned queue 'orders'"):
        limits.set_rate(app, "spread", "5/s")
    with pytest.raises(ConfigurationError, match="its rate is per key"):
        limits.set_rate(app, "fair", "5/s")
    assert all(limit.override is None for limit in limits.show(app))
