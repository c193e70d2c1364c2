"""The parity suite: the same behaviour tests on a real redis-server and on memory://.

Each test takes `app`, an App on one backend or the other; both must pass. Later features
(schedules, lifecycle, workflows, flow control) add their behaviour tests here."""

import os

import pytest

from streamwork import App
from streamwork._base import protocol
from streamwork._redis import memory


@pytest.fixture(params=["redis", "memory"])
def app(request):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")  # a private server, flushed
    else:
        url = f"memory://parity-{os.urandom(4).hex()}"
    application = App(url)
    yield application
    application.close()
    if request.param == "memory":
        memory.forget(url)
    protocol.reset_clock()
