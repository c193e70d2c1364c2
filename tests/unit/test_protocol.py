import msgpack
import pytest

from streamwork._base import protocol
from streamwork.errors import DecodeError, EncodeError


def envelope(**changes):
    fields = dict(
        id="a" * 32,
        task="send_email",
        args=(1, "x"),
        kwargs={"k": [1, 2]},
        headers={"trace": "t1"},
        enqueued_ms=1700000000000,
    )
    fields.update(changes)
    return protocol.Envelope(**fields)


def test_round_trip_keeps_every_field():
    original = envelope(attempt=3, first_failure_ms=1700000000500)
    assert protocol.decode(protocol.encode(original)) == original


def test_defaults_are_left_out_of_the_wire_and_restored():
    body = msgpack.unpackb(protocol.encode(envelope(kwargs={}, headers={})))
    assert set(body) == {"v", "id", "task", "args", "ts"}
    assert protocol.decode(protocol.encode(envelope(kwargs={}, headers={}))).attempt == 1


def test_a_message_written_by_hand_per_protocol_doc_decodes():
    # What docs/PROTOCOL.md tells a producer in another language to write.
    raw = msgpack.packb(
        {
            "v": 1,
            "id": "0123456789abcdef0123456789abcdef",
            "task": "resize",
            "args": [7],
            "ts": 1700000000000,
        }
    )
    decoded = protocol.decode(raw)
    assert (decoded.task, decoded.args, decoded.kwargs, decoded.attempt) == ("resize", (7,), {}, 1)


def test_unencodable_argument_is_a_clear_encode_error():
    with pytest.raises(EncodeError, match="only None, bool, int"):
        protocol.encode(envelope(args=(object(),)))


@pytest.mark.parametrize(
    ("args", "kwargs", "said"),
    [
        ((2**70,), {}, "args[0] is the int 1180591620717411303424, out of msgpack's range"),
        ((1, -(2**64)), {}, "args[1] is the int -18446744073709551616, out of msgpack's"),
        ((), {"tags": [1, {2}]}, "kwargs['tags'][1] is a set, which is not plain data"),
        ((), {"when": {"at": object()}}, "kwargs['when']['at'] is a object, which is not"),
    ],
)
def test_an_unencodable_argument_is_named_where_it_is(args, kwargs, said):
    with pytest.raises(EncodeError) as raised:
        protocol.encode(envelope(args=args, kwargs=kwargs))
    assert str(raised.value).startswith(f"cannot encode message: {said}"), str(raised.value)


def test_sizes_read_as_people_write_them():
    sizes = [1, 1000, 1024, 1536, 2**20, 64 * 2**20, 953674]
    assert [protocol.size_text(n) for n in sizes] == [
        "1 byte", "1000 bytes", "1 KiB", "1.5 KiB", "1 MiB", "64 MiB", "931.3 KiB",
    ]  # fmt: skip
    with pytest.raises(EncodeError, match=r"is 2 KiB encoded, over max_message_bytes \(1000 "):
        protocol.check_size(b"x" * 2048, 1000, "a message")


def test_an_undecodable_message_says_what_is_wrong_with_it():
    with pytest.raises(DecodeError) as raised:
        protocol.decode(b"\xc1 not msgpack")
    assert str(raised.value) == (
        "not valid msgpack (FormatError; 13 bytes starting b'\\xc1 not msgpack')"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1garbage", "not valid msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"v": 99, "id": "x", "task": "t"}), "unsupported message version 99"),
        (msgpack.packb({"v": 1, "id": 5, "task": "t"}), "invalid id 5"),
        (msgpack.packb({"v": 1, "id": "x"}), "neither a 'task' nor a 'topic'"),
        (msgpack.packb({"v": 1, "id": "x", "task": 5}), "'task' has the wrong type"),
        (msgpack.packb({"v": 1, "id": "x", "task": "t", "args": "no"}), "'args' has the wrong"),
        (msgpack.packb({"v": 1, "id": "x", "task": "t", "attempt": True}), "'attempt'"),
        ("text", "expected msgpack bytes"),
    ],
)
def test_bad_messages_raise_decode_error_naming_the_problem(raw, reason):
    with pytest.raises(DecodeError, match=reason):
        protocol.decode(raw)


def test_pickle_payloads_are_not_messages():
    import pickle

    with pytest.raises(DecodeError):
        protocol.decode(pickle.dumps({"v": 1, "id": "x", "task": "t"}))


def test_entry_without_m_field_names_the_fields_it_has():
    with pytest.raises(DecodeError, match=r"no 'm' field .*b'data'"):
        protocol.entry_body({b"data": b"x"})


def test_next_attempt_keeps_id_and_first_failure():
    first = envelope()
    second = first.next_attempt(1000, 1500)
    third = second.next_attempt(2000, 2500)
    assert (third.id, third.attempt, third.first_failure_ms, third.enqueued_ms) == (
        first.id,
        3,
        1000,
        2500,
    )


def test_dead_letter_round_trip_with_raw_fields():
    letter = protocol.DeadLetter(
        message={b"junk": b"\xff"}, reason="undecodable", queue="q", original_id="1-0", attempts=0
    )
    decoded = protocol.decode_dead_letter(protocol.encode_dead_letter(letter))
    assert decoded.message == {"junk": b"\xff"}
    assert decoded.reason == "undecodable"


def test_new_ids_are_unique_hex():
    ids = {protocol.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_topic_event_round_trip():
    event = protocol.Envelope(
        id="e" * 32,
        topic="orders.created",
        payload={"order_id": 1},
        headers={"h": 1},
        enqueued_ms=5,
    )
    body = msgpack.unpackb(protocol.encode(event))
    assert set(body) == {"v", "id", "topic", "payload", "headers", "ts"}
    assert protocol.decode(protocol.encode(event)) == event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("task", "job\n2026-01-01 INFO forged line"),
        ("task", "x y"),
        ("topic", "t\x1b[2J"),
        ("id", "a b"),
        ("id", "x" * 65),
        ("id", ""),
    ],
)
def test_names_and_ids_that_are_unsafe_to_log_do_not_decode(field, value):
    body = {"v": 1, "id": "abc", "task": "job", "args": []}
    if field == "topic":
        body = {"v": 1, "id": "abc", "topic": "t", "payload": 1}
    body[field] = value
    with pytest.raises(DecodeError, match=f"invalid {field}"):
        protocol.decode(msgpack.packb(body))


def test_the_fast_path_decodes_what_the_checked_path_decodes():
    """decode() skips the per-field checks for the usual shape once a name was seen valid;
    a message with one bad field still gets the checked path's error."""
    from streamwork._base.protocol import _decode_checked, _unpack

    envelope = protocol.Envelope(
        id=protocol.new_id(), task="fast_path_task", args=(1, "x"), kwargs={"k": [1]},
        headers={"h": "v"}, enqueued_ms=5, attempt=3, first_failure_ms=4,
    )  # fmt: skip
    raw = protocol.encode(envelope)
    assert protocol.decode(raw) == _decode_checked(_unpack(raw)) == envelope
    assert protocol.decode(raw) == envelope  # the name is known now: the fast path
    body = msgpack.unpackb(raw)
    for field, bad in [("attempt", "2"), ("ts", 1.5), ("args", {"a": 1}), ("id", "no spaces!"),
                       ("topic", "bad name!"), ("kwargs", [1]), ("ff", "x")]:  # fmt: skip
        with pytest.raises(protocol.DecodeError):
            protocol.decode(msgpack.packb({**body, field: bad}))


def test_a_message_without_an_id_decodes_with_an_empty_id_for_its_reader_to_name():
    """The first attempt of a message sent by entry carries no id (ids.py): its reader
    names it from its entry."""
    envelope = protocol.Envelope(id="abc", task="t", args=(1,))
    body = protocol.encode(envelope, with_id=False)
    assert b"id" not in msgpack.unpackb(body)
    decoded = protocol.decode(body)
    assert decoded.id == "" and decoded.task == "t" and decoded.args == (1,)
    assert protocol.with_id(decoded, "named").id == "named"
