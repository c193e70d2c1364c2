"""Bad entries never crash a worker: they are set aside as dead letters, with the reason."""

import msgpack

from streamwork._base import protocol
from streamwork.ops.stats import queue_state
from streamwork.testing import drain


def dead_letters(client, app, queue="default"):
    return [
        protocol.decode_dead_letter(fields[b"m"])
        for _, fields in client.xrange(app.keys(queue).dead_letters)
    ]


def good_and_bad(app, client, bad_fields):
    seen = []

    @app.task
    def job(n):
        seen.append(n)

    job.send(1)
    client.xadd(app.keys("default").stream, bad_fields)
    job.send(2)
    drain(app)
    return seen


def test_undecodable_entry_is_dead_lettered_and_the_worker_goes_on(app, client):
    seen = good_and_bad(app, client, {b"m": b"\xc1 not msgpack"})
    assert seen == [1, 2]
    [letter] = dead_letters(client, app)
    assert letter.reason.startswith("undecodable message: not valid msgpack")
    assert letter.message == b"\xc1 not msgpack"  # kept as it was, for inspection
    assert letter.error_type == "DecodeError"
    assert queue_state(app, "default").is_empty


def test_entry_without_the_message_field_keeps_its_raw_fields(app, client):
    seen = good_and_bad(app, client, {b"hello": b"world"})
    assert seen == [1, 2]
    [letter] = dead_letters(client, app)
    assert "entry has no 'm' field" in letter.reason
    assert letter.message == {"hello": b"world"}


def test_message_of_a_newer_version_is_dead_lettered_not_guessed_at(app, client):
    body = msgpack.packb({"v": 2, "id": "x", "task": "job", "args": [3]})
    seen = good_and_bad(app, client, {b"m": body})
    assert seen == [1, 2]
    [letter] = dead_letters(client, app)
    assert "unsupported message version 2" in letter.reason


def test_unknown_task_is_dead_lettered_with_the_known_names(app, client):
    body = protocol.encode(protocol.Envelope(id="abc", task="no_such_task", args=(1,)))
    seen = good_and_bad(app, client, {b"m": body})
    assert seen == [1, 2]
    [letter] = dead_letters(client, app)
    assert letter.reason == "unknown task 'no_such_task' (this worker knows: job)"
    assert (letter.task, letter.task_id) == ("no_such_task", "abc")
    assert protocol.decode(letter.message).args == (1,)  # the original message is kept


def test_arguments_that_do_not_fit_are_dead_lettered_without_running(app, client):
    # A producer in another language can skip the send-time check.
    body = protocol.encode(protocol.Envelope(id="abc", task="job", args=(1, 2, 3)))
    seen = good_and_bad(app, client, {b"m": body})
    assert seen == [1, 2]
    [letter] = dead_letters(client, app)
    assert letter.reason.startswith("bad arguments: job(): too many positional arguments")


def test_message_without_ts_runs_and_does_not_count_toward_the_wait(app, client):
    seen = good_and_bad(
        app, client, {b"m": msgpack.packb({"v": 1, "id": "no-ts", "task": "job", "args": [7]})}
    )
    assert seen == [1, 7, 2]
    state = queue_state(app, "default")
    assert state.runs == 3
    assert state.waited == 2  # the message without ts has no known wait
    assert state.wait_ms < 60_000  # not the Unix epoch (about 57 years)
