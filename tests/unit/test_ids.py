"""Message ids read off stream entries (streamwork/_base/ids.py)."""

import pytest

from streamwork._base import ids, protocol


@pytest.mark.parametrize(
    ("band", "entry", "where"),
    [
        (None, b"1765152000123-0", "1765152000123-0"),
        ("default", "1765152000123-7", "1765152000123-7"),
        ("high", b"1765152000123-4294967295", "high|1765152000123-4294967295"),
        ("low", b"1-2", "low|1-2"),
    ],
)
def test_an_entry_id_is_32_hex_digits_that_lead_back_to_its_entry(band, entry, where):
    message_id = ids.from_entry("emails", band, entry)
    assert len(message_id) == 32 and all(c in "0123456789abcdef" for c in message_id)
    assert protocol.ID.fullmatch(message_id)
    assert ids.entry_of(message_id, "emails") == where


def test_an_entry_id_belongs_to_its_queue_alone():
    message_id = ids.from_entry("emails", None, b"1765152000123-0")
    assert ids.entry_of(message_id, "email") is None
    assert ids.entry_of(message_id, "orders~1") is None
    partition = ids.from_entry("orders~1", None, b"1765152000123-0")
    assert partition != message_id and ids.entry_of(partition, "orders~1") is not None


@pytest.mark.parametrize(
    "other",
    [
        protocol.new_id(),
        "x" * 32,
        "ABCDEF" + "0" * 26,
        "order-42",
        "",
        # the right hash, but not an entry id's shape: a band digit past 2, a sign, a length
        "0" * 20 + "3" + ids.queue_hash("emails"),
        "-" + "0" * 19 + "0" + ids.queue_hash("emails"),
        "0" * 21 + "0" + ids.queue_hash("emails"),
    ],
)
def test_another_id_is_not_read_as_an_entry(other):
    assert ids.entry_of(other, "emails") is None


def test_named_keeps_an_id_the_message_carries_and_names_one_that_has_none():
    carried = protocol.decode(protocol.encode(protocol.Envelope(id="given", task="t")))
    assert ids.named(carried, "emails", None, b"5-0").id == "given"
    bare = protocol.decode(protocol.encode(protocol.Envelope(id="x", task="t"), with_id=False))
    named = ids.named(bare, "emails", "high", b"5-1")
    assert named.id == ids.from_entry("emails", "high", b"5-1")
    assert ids.entry_of(named.id, "emails") == "high|5-1"


def test_a_batch_of_entries_is_named_as_each_would_be():
    entries = [b"1765152000123-0", b"1765152000123-1", b"1765152000124-0", b"1765152000124-70000"]
    assert ids.from_entries("q", "low", entries) == [ids.from_entry("q", "low", e) for e in entries]
