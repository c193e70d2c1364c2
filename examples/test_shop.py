"""Testing tasks with no redis-server: the streamwork pytest plugin runs them on memory://.

cd examples && python -m pytest test_shop.py
"""

import pytest
import shop

from streamwork import TaskFailed
from streamwork.ops import dead_letters


@pytest.fixture(autouse=True)
def fresh_stock():
    shop.stock.update(apple=3, pear=0)
    shop.shipped.clear()
    shop.audit.clear()


def test_reserve_returns_what_is_left(streamwork_memory, run_tasks):
    handle = shop.reserve.send("apple", 2)
    run_tasks()
    assert handle.result() == 1


def test_an_unknown_item_is_dead_lettered(streamwork_memory, run_tasks):
    handle = shop.reserve.send("plum", 1)
    run_tasks()
    with pytest.raises(TaskFailed, match="unknown item 'plum'"):
        handle.result()
    source = shop.app.queue_source("default")
    [entry] = dead_letters.list_dead_letters(shop.app.connection, source)
    assert entry.letter.reason == "rejected: unknown item 'plum'"


def test_out_of_stock_waits_an_hour_then_succeeds(streamwork_memory, run_tasks):
    handle = shop.reserve.send("pear", 1)
    summary = run_tasks(advance_time=False)  # the retry is an hour away
    assert summary.retried == 1
    shop.stock["pear"] = 5  # restocked meanwhile
    run_tasks()  # advance_time=True by default: the hour passes at once
    assert handle.result() == 4


def test_events_reach_their_subscriber(streamwork_memory, run_tasks):
    shop.app.publish("orders.created", {"id": 7, "customer": "ada"})
    shop.ship.send(7)
    run_tasks()
    assert shop.audit == ["order 7 by ada"]
    assert shop.shipped == ["order 7"]
