"""What a Celery codebase calls, on Redis and on memory://: what `result()` raises for a
failed task (with its traceback), and finding a message by its id alone
(`app.handle(id)`, Celery's `AsyncResult(id)`)."""

import pytest

from streamwork import App, ConfigurationError, TaskFailed, UnknownMessage, UnknownTask
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
