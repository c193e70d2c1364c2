"""A lane takes its connection from the client's pool with whichever signature the
installed redis-py has: since 5.3 `get_connection()`, before it `get_connection(name)`."""

import asyncio
from types import SimpleNamespace

from streamwork._redis.lanes import Lane


class Connection:
    def __init__(self):
        self.sent = []

    def pack_command(self, *args):
        return args

    async def send_packed_command(self, packed):
        self.sent.append(packed)

    async def read_response(self):
        return b"PONG"


class PoolBefore53:
    """redis-py 5.0-5.2: a command name is required (and ignored)."""

    def __init__(self):
        self.connection = Connection()
        self.asked = []

    async def get_connection(self, command_name, *keys, **options):
        self.asked.append(command_name)
        return self.connection


class Pool:
    def __init__(self):
        self.connection = Connection()
        self.asked = 0

    async def get_connection(self):
        self.asked += 1
        return self.connection


def test_a_lane_checks_out_one_connection_from_either_pool_signature():
    old, new = PoolBefore53(), Pool()
    for pool in (old, new):
        lane = Lane(SimpleNamespace(connection_pool=pool))

        async def twice(lane=lane):
            return [await lane.execute("PING"), await lane.execute("PING")]

        assert asyncio.run(twice()) == [b"PONG", b"PONG"]
        assert pool.connection.sent == [("PING",), ("PING",)]
    assert old.asked == ["_"] and new.asked == 1  # once: the lane keeps its connection
