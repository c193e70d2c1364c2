"""Workflows (chain, group, chord) behave the same on Redis and on memory://: results flow
between steps, failures follow the on_failure rules, replayed children resume, cancel stops."""

import pytest

from streamwork import (
    BadArguments,
    ChildFailed,
    ConfigurationError,
    Retry,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
    chain,
    chord,
    group,
)
from streamwork._base import protocol
from streamwork.ops.dead_letters import replay
from streamwork.testing import run_until_idle


@pytest.fixture
def tasks(app):
    class Tasks:
        calls = []

        @app.task
        def add(x, y=0):
            Tasks.calls.append(("add", x, y))
            return x + y

        @app.task
        def collect(values):
            return [repr(v) if isinstance(v, ChildFailed) else v for v in values]

        @app.task(max_retries=0)
        def boom(x):
            raise ValueError(f"boom {x}")

        @app.task
        def constant():
            return "c"

    return Tasks


def test_a_chain_passes_each_result_to_the_next_step(app, tasks):
    handle = chain(tasks.add.s(1, 2), tasks.add.s(10), tasks.add.s(100)).send()
    assert handle.status().state == "running"
    run_until_idle(app)
    assert handle.result(timeout=1) == 113
    assert handle.results(timeout=1) == [3, 13, 113]
    status = handle.status()
    assert status.state == "done" and status.kind == "chain"
    assert [n.state for n in status.nodes] == ["done"] * 4


def test_a_group_returns_results_in_member_order(app, tasks):
    handle = group(tasks.add.s(i, i) for i in range(100)).send()
    run_until_idle(app)
    assert handle.result(timeout=1) == [2 * i for i in range(100)]
    assert handle.results(timeout=1) == [2 * i for i in range(100)]


def test_a_chord_calls_back_once_with_every_header_result(app, tasks):
    handle = chord([tasks.add.s(i) for i in range(20)], tasks.collect.s()).send()
    run_until_idle(app)
    assert handle.result(timeout=1) == list(range(20))
    assert handle.results(timeout=1) == list(range(20))  # the header's


def test_nesting_a_chord_in_a_chain_and_groups_and_chains_in_a_header(app, tasks):
    inner = chain(tasks.add.s(2), group(tasks.add.s(3), tasks.add.s(4)))
    handle = chain(
        tasks.add.s(1, 1),  # 2
        chord([tasks.add.s(1), inner], tasks.collect.s()),  # [3, [7, 8]]
        tasks.constant.si(),  # immutable: gets nothing
    ).send()
    run_until_idle(app)
    assert handle.results(timeout=1) == [2, [3, [7, 8]], "c"]
    assert handle.result(timeout=1) == "c"


def test_pipe_builds_a_chain(app, tasks):
    handle = (tasks.add.s(1, 1) | tasks.add.s(5)).send()
    run_until_idle(app)
    assert handle.result(timeout=1) == 7


def test_a_failed_header_child_fails_the_chord_and_the_callback_never_runs(app, tasks):
    handle = chain(
        chord([tasks.add.s(1), tasks.boom.s(2)], tasks.collect.s()), tasks.add.s(1)
    ).send()
    run_until_idle(app)
    status = handle.status()
    assert status.state == "failed"
    (failure,) = status.failures
    assert failure.failed == ChildFailed("boom", "ValueError", "boom 2")
    assert "boom" in status.error and "ValueError: boom 2" in status.error
    assert [n.state for n in status.nodes if n.task == "collect"] == ["waiting"]
    with pytest.raises(WorkflowFailed, match="ValueError: boom 2") as failed:
        handle.result(timeout=1)
    assert failed.value.failures == list(status.failures)


def test_continue_passes_child_failed_values_to_the_callback(app, tasks):
    handle = chord(
        [tasks.add.s(1), tasks.boom.s(2), chain(tasks.boom.s(3), tasks.add.s(1))],
        tasks.collect.s(),
        on_failure="continue",
    ).send()
    run_until_idle(app)
    assert handle.result(timeout=1) == [
        1,
        repr(ChildFailed("boom", "ValueError", "boom 2")),
        repr(ChildFailed("boom", "ValueError", "boom 3")),
    ]
    assert [c[0] for c in tasks.calls] == ["add"]  # the failed chain's 2nd step never ran
    assert handle.status().state == "done"


def test_retries_are_invisible_until_the_final_outcome(app):
    attempts = []

    @app.task(max_retries=3, backoff=None)
    def flaky(x):
        attempts.append(x)
        if len(attempts) < 3:
            raise Retry(delay=0)
        return x * 10

    @app.task
    def total(values):
        return sum(values)

    handle = chord([flaky.s(1)], total.s()).send()
    run_until_idle(app, advance_time=True)
    assert attempts == [1, 1, 1]
    assert handle.result(timeout=1) == 10


def test_a_replayed_dead_letter_that_succeeds_resumes_the_workflow(app):
    fixed = []

    @app.task(max_retries=0)
    def fragile(x):
        if not fixed:
            raise ValueError("not yet")
        return x

    @app.task
    def total(values):
        return sum(values)

    handle = chord([fragile.s(1), fragile.s(2)], total.s()).send()
    run_until_idle(app)
    assert handle.status().state == "failed"
    assert len(handle.status().failures) == 2
    fixed.append(True)
    report = replay(app.connection, app.queue_source("default"))
    assert report.replayed == 2
    run_until_idle(app)
    assert handle.status().state == "done"
    assert handle.result(timeout=1) == 3


def test_cancel_stops_a_workflow_mid_way(app, tasks):
    handle = chain(tasks.add.s(1), tasks.add.s(2), tasks.add.s(3)).send()
    status = handle.status()
    first = status.nodes[1]
    assert first.state == "sent"
    assert app.handle("add", first.message_id).status().workflow == handle.id
    assert handle.cancel("changed my mind") == "cancelled"
    assert handle.cancel() == "cancelled"  # a repeat answers as the first did
    run_until_idle(app)
    assert tasks.calls == []
    assert app.handle("add", first.message_id).status().state == "cancelled"
    with pytest.raises(WorkflowCancelled, match="changed my mind"):
        handle.result(timeout=1)
    assert handle.status().state == "cancelled"


def test_a_cancelled_workflows_tree_reads_cancelled_where_it_had_not_finished(app, tasks):
    later = app.task(queue="later", name="later")(lambda values: values)
    handle = chain(
        group(tasks.add.s(1), later.s(2)), tasks.collect.s(), group(tasks.add.s(3))
    ).send()
    run_until_idle(app, queues=["default"])  # add(1) runs; later(2) waits in its queue
    before = {(n.kind, n.task): n.state for n in handle.status().nodes}
    assert before[("chain", None)] == "running" and before[("task", "later")] == "sent"
    assert handle.cancel() == "cancelled"
    nodes = handle.status().nodes
    assert [(n.kind, n.task, n.state) for n in nodes] == [
        ("chain", None, "cancelled"),
        ("group", None, "cancelled"),
        ("task", "add", "done"),  # finished before the cancel: stays done
        ("task", "later", "cancelled"),  # sent, not run
        ("task", "collect", "cancelled"),  # never sent
        ("group", None, "cancelled"),
        ("task", "add", "cancelled"),
    ]


def test_a_workflow_record_lives_while_it_runs_and_expires_after(app, tasks):
    handle = chain(tasks.add.s(1), tasks.add.s(2)).send()
    redis = app.connection.redis
    assert redis.pttl(handle.keys.workflow) == -1  # never expires while it runs
    run_until_idle(app)
    assert 0 < redis.pttl(handle.keys.workflow) <= 86_400_000


def test_bad_workflows_are_refused_before_anything_is_sent(app, tasks):
    with pytest.raises(ConfigurationError, match=r"^group\(\) needs at least one signature$"):
        group([])
    with pytest.raises(ConfigurationError, match=r"^chord\(\) needs at least one signature in"):
        chord([], tasks.collect.s())
    with pytest.raises(ConfigurationError, match="takes signatures"):
        chain(tasks.add.s(1), "not a signature")
    with pytest.raises(ConfigurationError, match="on_failure"):
        chord([tasks.add.s(1)], tasks.collect.s(), on_failure="ignore")
    with pytest.raises(BadArguments, match="add"):
        chain(tasks.add.s(1), tasks.add.s(1, 2)).send()  # the 2nd gets 3 arguments
    with pytest.raises(BadArguments, match="constant"):
        chain(tasks.add.s(1), tasks.constant.s()).send()

    @app.task(ack_mode="auto")
    def fire_and_forget():
        pass

    with pytest.raises(ConfigurationError, match="ack_mode='auto'"):
        fire_and_forget.s()
    assert run_until_idle(app).ran == 0
    with pytest.raises(UnknownWorkflow):
        app.workflow(protocol.new_id()).result(timeout=0.01)
    with pytest.raises(ConfigurationError, match="invalid workflow id"):
        app.workflow("not an id!")


def test_values_pass_between_steps_unchanged(app):
    values = [
        b"\x00\xffbytes",
        1.5,
        2**63 - 1,
        -(2**40),
        None,
        True,
        "ünï",
        {"k": [1, {"n": None}]},
    ]

    @app.task
    def echo(value):
        return value

    @app.task
    def keep(values):
        return values

    handle = chord([echo.s(v) for v in values] * 3, keep.s()).send()
    run_until_idle(app)
    assert handle.result(timeout=1) == values * 3


def test_a_child_failed_value_travels_as_an_argument(app):
    @app.task
    def passes(values):
        return values

    @app.task
    def inspect(values):
        (failed,) = values
        assert isinstance(failed, ChildFailed)
        return [failed.task, failed.error_type, failed.error]

    @app.task(max_retries=0)
    def boom():
        raise KeyError("gone")

    handle = chain(chord([boom.si()], passes.s(), on_failure="continue"), group(inspect.s())).send()
    run_until_idle(app)
    assert handle.result(timeout=1) == [["boom", "KeyError", "'gone'"]]


def test_a_cancelled_child_fails_its_workflow_and_its_sent_event_names_it(app):
    from streamwork import App

    events_app = App(app.url, events=True)

    @events_app.task
    def job(n):
        return n

    @events_app.task
    def join(values):
        return values

    handle = chord([group(job.s(1), job.s(2)), job.s(3)], join.s()).send()
    status = handle.status()
    second = next(n for n in status.nodes if n.task == "job" and n.index == 3)
    assert events_app.handle("job", second.message_id).cancel("not this one") == "cancelled"
    run_until_idle(events_app)
    status = handle.status()
    assert status.state == "failed"
    assert [(f.node, f.failed.error_type, f.failed.error) for f in status.failures] == [
        (3, "Cancelled", "not this one")
    ]
    sent = [e for e in events_app.read_events("default", since="0") if e.event == "sent"]
    assert {e.workflow for e in sent} == {handle.id} and len(sent) == 3

    handle = chord([group(job.s(1), job.s(2)), job.s(3)], join.s()).send()
    run_until_idle(events_app)
    assert handle.result(timeout=1) == [[1, 2], 3]  # a group inside a chord's header


def test_pipes_flatten_into_one_chain(app, tasks):
    """`a | b | c` is one chain of three steps (not a chain of a chain), as in Celery."""
    handle = (tasks.add.s(1, 1) | tasks.add.s(2) | tasks.add.s(4)).send()
    joined = (chain(tasks.add.s(1), tasks.add.s(1)) | chain(tasks.add.s(1), tasks.add.s(1))).send()
    run_until_idle(app)
    assert handle.results(timeout=1) == [2, 4, 8]
    assert joined.results(timeout=1) == [1, 2, 3, 4]
    assert joined.status().kind == "chain" and len(joined.status().nodes) == 5


def test_a_group_piped_into_a_task_is_a_chord_and_a_chain_into_a_group_a_step(app, tasks):
    chorded = (group(tasks.add.s(1), tasks.add.s(2)) | tasks.collect.s()).send()
    stepped = (tasks.add.s(1, 1) | group(tasks.add.s(1), tasks.add.s(2))).send()
    run_until_idle(app)
    assert chorded.status().kind == "chord"
    assert chorded.result(timeout=1) == [1, 2]
    assert stepped.results(timeout=1) == [2, [3, 4]]


def test_a_pipe_into_something_not_a_canvas_is_a_type_error(tasks):
    with pytest.raises(TypeError):
        tasks.add.s(1) | 2
