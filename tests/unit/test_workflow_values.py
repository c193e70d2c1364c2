"""ChildFailed crosses the wire as msgpack ext type 1, in arguments and in results."""

import msgpack
import pytest

from streamwork import ChildFailed
from streamwork._base import protocol


def test_child_failed_round_trips_in_values_and_messages():
    failed = ChildFailed("charge", "ValueError", "card declined")
    value = [1, failed, {"nested": [failed]}]
    assert protocol.unpack_value(protocol.pack_value(value)) == value
    envelope = protocol.Envelope(id="a" * 32, task="summarize", args=(value,))
    assert protocol.decode(protocol.encode(envelope)).args == (value,)
    ext = msgpack.unpackb(protocol.pack_value(failed))
    assert ext.code == protocol.CHILD_FAILED_EXT
    assert msgpack.unpackb(ext.data) == ["charge", "ValueError", "card declined"]


def test_other_ext_types_and_objects_are_not_plain_data():
    assert protocol.unpack_value(msgpack.packb(msgpack.ExtType(9, b"x"))) == msgpack.ExtType(
        9, b"x"
    )
    with pytest.raises(TypeError, match="can not serialize 'object' object"):
        protocol.pack_value(object())
