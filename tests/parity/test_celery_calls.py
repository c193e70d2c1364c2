"""What a Celery codebase calls, on Redis and on memory://: what `result()` raises for a
failed task (with its traceback), and finding a message by its id alone
(`app.handle(id)`, Celery's `AsyncResult(id)`)."""

import pytest

from streamwork import App, ConfigurationError, TaskFailed, UnknownMessage, UnknownTask
from streamwork._base import protocol
from streamwork.testing import run_until_idle


def test_a_failed_result_raises_task_failed_with_the_handlers_traceback(app):
    @app.task(store_result=True, max_retries=0)
    def divide(a, b):
        return a / b

    handle = divide.send(1, 0)
    run_until_idle(app)
    with pytest.raises(TaskFailed) as failed:
        handle.result(timeout=1)
    assert (failed.value.error_type, failed.value.error) == (
        "ZeroDivisionError",
        "division by zero",
    )
    assert "return a / b" in failed.value.traceback
    assert failed.value.traceback.rstrip().endswith("ZeroDivisionError: division by zero")


def test_a_rejected_result_names_the_reject(app):
    from streamwork import Reject

    @app.task(store_result=True)
    def refuse():
        raise Reject("no")

    handle = refuse.send()
    run_until_idle(app)
    with pytest.raises(TaskFailed) as failed:
        handle.result(timeout=1)
    assert (failed.value.error_type, failed.value.error) == ("Reject", "no")
    assert 'raise Reject("no")' in failed.value.traceback


def test_a_message_is_found_by_its_id_alone(app):
    @app.task(store_result=True)
    def add(a, b):
        return a + b

    @app.task(queue="orders", partitions=3, store_result=True)
    def place(n):
        return n

    sent, placed = add.send(2, 3), place.send(7)
    found = app.handle(sent.id)
    assert found.task is add and found.status().state == "queued"
    assert app.handle(placed.id).task is place
    run_until_idle(app)
    assert app.handle(sent.id).result(timeout=1) == 5
    assert app.handle(placed.id).result(timeout=1) == 7
    assert app.handle("add", sent.id).result(timeout=1) == 5  # with its task, as before


def test_an_id_no_status_knows_an_unknown_task_and_a_bad_id_are_refused(app):
    @app.task
    def job():
        return None

    with pytest.raises(UnknownMessage, match="no status for message"):
        app.handle("0" * 32)
    with pytest.raises(ConfigurationError, match="invalid message id"):
        app.handle("not an id!")
    with pytest.raises(ConfigurationError, match="needs the message id too"):
        app.handle(job)
    sent = job.send()
    other = App(app.url, namespace=app.namespace)  # another service: no task "job"
    try:
        with pytest.raises(UnknownTask, match="of task 'job'"):
            other.handle(sent.id)
    finally:
        other.close()


def test_an_app_without_status_cannot_find_a_message_by_id(app):
    quiet = App(app.url, namespace="quiet", track_status=False)
    try:
        with pytest.raises(ConfigurationError, match=r"app\.handle\(task, id\)"):
            quiet.handle("0" * 32)
    finally:
        quiet.close()


def test_send_with_queue_routes_one_message_to_another_queue(app):
    """Celery's apply_async(queue="lopri"): the message waits in that queue, a worker of
    that queue runs it, its status and result are kept there and its handle knows where."""
    from streamwork.ops import stats

    app.queue("lopri")

    @app.task(store_result=True)
    def add(a, b):
        return a + b

    routed = add.send_with(args=(2, 3), queue="lopri")
    later = add.send_with(args=(4, 5), queue="lopri", delay=30)
    own = add.send_with(args=(1, 1), queue="default")  # its own queue: as without queue=
    assert (routed.queue, own.queue) == ("lopri", None)
    assert stats.queue_state(app, "lopri").ready == 1
    assert stats.queue_state(app, "lopri").delayed == 1
    assert stats.queue_state(app, "default").ready == 1
    assert run_until_idle(app, queues=["default"]).ran == 1  # not lopri's
    assert routed.status().state == "queued" and later.status().state == "delayed"
    assert run_until_idle(app, queues=["lopri"], advance_time=True).ran == 2
    assert (routed.result(timeout=1), later.result(timeout=1), own.result(timeout=1)) == (5, 9, 2)
    found = app.handle(routed.id)
    assert found.queue == "lopri" and found.status().state == "done"
    assert found.result(timeout=1) == 5


def test_a_routed_message_can_be_cancelled_where_it_waits(app):
    app.queue("lopri")
    ran = []

    @app.task
    def job():
        ran.append(1)

    handle = job.send_with(queue="lopri")
    assert handle.cancel() == "cancelled"
    run_until_idle(app)
    assert ran == [] and handle.status().state == "cancelled"


def test_send_with_queue_refuses_what_it_cannot_route(app):
    app.queue("orders", partitions=3)

    @app.task
    def job():
        return None

    @app.task(queue="limited", rate_limit="5/s")
    def limited():
        return None

    @app.task(queue="bands", priority="high")
    def banded():
        return None

    with pytest.raises(ConfigurationError, match=r"unknown queue 'lopri'.*app\.queue\('lopri'\)"):
        job.send_with(queue="lopri")
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        job.send_with(queue="no spaces")
    for target in ("orders", "bands"):
        with pytest.raises(ConfigurationError, match="routes to a plain queue"):
            job.send_with(queue=target)
    with pytest.raises(ConfigurationError, match="routes to a plain queue"):
        job.send_with(queue="limited", priority="high")
    with pytest.raises(ConfigurationError, match="kept on its queue 'limited'"):
        limited.send_with(queue="default")


def test_progress_carries_a_small_dict_to_the_status_and_the_events(app):
    """Celery's update_state(state="PROGRESS", meta={...}): progress(fraction, note, data)."""
    from streamwork import App as _App

    events_app = _App(app.url, namespace="progressing", events=True)
    errors = []

    @events_app.task(bind=True)
    def encode(message, frames):
        message.progress(0.5, "half", data={"frames": frames // 2, "codec": "av1"})
        for bad in ({1: "int key"}, {"blob": object()}, {"big": "x" * 5000}, ["not", "a dict"]):
            try:
                message.progress(0.6, data=bad)
            except Exception as exc:
                errors.append(type(exc).__name__)

    try:
        handle = encode.send(120)
        run_until_idle(events_app)
        status = handle.status()
        assert status.data == {"frames": 60, "codec": "av1"} and status.note == "half"
        assert errors == ["ConfigurationError", "EncodeError", "EncodeError", "ConfigurationError"]
        progressed = [e for e in events_app.read_events() if e.event == "progress"]
        assert progressed and progressed[-1].data == {"frames": 60, "codec": "av1"}
    finally:
        events_app.close()


def expired_count(task):
    from prometheus_client import REGISTRY

    labels = {"queue": "default", "group": "", "task": task}
    return REGISTRY.get_sample_value("streamwork_tasks_expired_total", labels) or 0


def test_a_message_not_started_by_its_deadline_never_runs(app):
    """expires=: its status reads expired, it is not retried nor dead-lettered, a stored
    result says Expired, a metric counts it; one started in time runs."""
    from streamwork.ops import stats

    ran = []

    @app.task(store_result=True)
    def report(n):
        ran.append(n)
        return n

    before = expired_count("report")
    late = report.send_with(args=(1,), expires=30)
    protocol.advance_clock(60_000)  # no worker ran in time
    on_time = report.send_with(args=(2,), expires=30)
    summary = run_until_idle(app)
    assert ran == [2] and on_time.result(timeout=1) == 2
    assert late.status().state == "expired" and "deadline" in late.status().error
    with pytest.raises(TaskFailed) as failed:
        late.result(timeout=1)
    assert failed.value.error_type == "Expired"
    assert summary.dead == 0 and stats.queue_state(app, "default").dead_letters == 0
    assert late.cancel() == "finished"
    assert expired_count("report") == before + 1


def test_a_tasks_expires_holds_for_its_retries(app):
    """The deadline is absolute: a retry due after it is not run."""
    runs = []

    @app.task(expires=5, retry_delay=10)
    def flaky():
        runs.append(1)
        raise ValueError("down")

    handle = flaky.send()
    run_until_idle(app, advance_time=True)
    assert runs == [1] and handle.status().state == "expired"


def test_an_expired_keyed_message_lets_the_next_one_of_its_key_run(app):
    ran = []

    @app.task
    def step(n):
        ran.append(n)

    step.send_with(args=(1,), partition_key="k", expires=30)
    protocol.advance_clock(60_000)
    step.send_with(args=(2,), partition_key="k")
    run_until_idle(app, advance_time=True)
    assert ran == [2]


def test_expires_is_checked_when_sent(app):
    from datetime import datetime

    @app.task
    def job():
        return None

    with pytest.raises(ConfigurationError, match="expires must be a timezone-aware"):
        job.send_with(expires=datetime(2030, 1, 1))
    with pytest.raises(ConfigurationError, match="expires must be > 0"):
        job.send_with(expires=0)
    with pytest.raises(ConfigurationError, match="due at or after its deadline"):
        job.send_with(delay=60, expires=30)  # a value that passes but could never run

    @app.task(expires=5)
    def brief():
        return None

    with pytest.raises(ConfigurationError, match="due at or after its deadline"):
        brief.send_many([()], delay=10)
    with pytest.raises(ConfigurationError, match="expires"):
        app.task(name="bad", expires="soon")(lambda: None)


def test_a_task_can_ask_for_its_expired_messages_in_the_dead_letters(app):
    from streamwork.ops import dead_letters

    @app.task(expires=30, dead_letter_expired=True)
    def audit(n):
        return n

    before = expired_count("audit")
    handle = audit.send_with(args=(1,))
    protocol.advance_clock(60_000)
    run_until_idle(app)
    [entry] = dead_letters.list_dead_letters(app.connection, app.queue_source("default"))
    assert entry.letter.reason.startswith("expired: not started by its deadline")
    assert handle.status().state == "expired"
    assert expired_count("audit") == before + 1
    with pytest.raises(ConfigurationError, match="dead_letter_expired must be True or False"):
        app.task(name="bad", dead_letter_expired="yes")(lambda: None)
