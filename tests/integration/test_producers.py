"""Producers against a real Redis: what lands in the stream, the delayed set and the registry."""

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import msgpack
import pytest

from streamwork import App, BadArguments, ConfigurationError, ConnectionFailed, EncodeError
from streamwork._base import ids, protocol


def entries(client, app, queue="default"):
    return client.xrange(app.keys(queue).stream)


def test_send_adds_one_versioned_msgpack_entry_whose_id_is_the_handle_s(app, client):
    @app.task(queue="emails")
    def send_email(to, subject): ...

    handle = send_email.send("a@example.com", subject="hi")
    [(entry_id, fields)] = entries(client, app, "emails")
    assert list(fields) == [b"m"]  # the entry alone (PROTOCOL.md: sent by entry)
    body = msgpack.unpackb(fields[b"m"])
    assert body["v"] == 1
    assert "id" not in body and handle.id == ids.from_entry("emails", None, entry_id)
    assert body["task"] == "send_email"
    assert body["args"] == ["a@example.com"]
    assert body["kwargs"] == {"subject": "hi"}
    assert client.smembers("sw:queues") == {b"emails"}


async def test_send_async_adds_an_entry(app, client):
    @app.task
    async def resize(image_id: int) -> None: ...

    handle = await resize.send_async(7)
    await app.aclose()
    [(entry_id, fields)] = entries(client, app)
    assert protocol.decode(fields[b"m"]).id == "" and not handle.is_duplicate
    assert handle.id == ids.from_entry("default", None, entry_id)


def test_send_many_uses_one_command_per_thousand(app, client):
    @app.task
    def job(n): ...

    job.send_many([0])  # registers the queue and loads the script
    client.config_resetstat()
    handles = job.send_many(range(2500))
    stats = client.info("commandstats")
    calls = stats["cmdstat_evalsha"]["calls"] + stats.get("cmdstat_eval", {}).get("calls", 0)
    assert calls == 3  # 1000 + 1000 + 500, one round trip each
    assert stats["cmdstat_xadd"]["calls"] == 2500
    assert len({h.id for h in handles}) == 2500
    rows = entries(client, app)[1:]
    sent = [protocol.decode(f[b"m"]) for _, f in rows]
    assert [m.args for m in sent] == [(n,) for n in range(2500)]
    assert [ids.from_entry("default", None, e) for e, _ in rows] == [h.id for h in handles]


def test_send_many_items_tuple_dict_or_single_value(app, client):
    @app.task
    def job(a, b=0): ...

    job.send_many([(1, 2), {"a": 3}, 4])
    sent = [protocol.decode(f[b"m"]) for _, f in entries(client, app)]
    assert [(m.args, m.kwargs) for m in sent] == [((1, 2), {}), ((), {"a": 3}), ((4,), {})]


def test_send_many_with_one_bad_item_sends_nothing(app, client):
    @app.task
    def job(a): ...

    with pytest.raises(BadArguments):
        job.send_many([(1,), (2,), (3, 4)])
    assert entries(client, app) == []


def test_unencodable_argument_fails_at_send_and_sends_nothing(app, client):
    @app.task
    def job(a): ...

    with pytest.raises(EncodeError, match="cannot encode"):
        job.send({1, 2})
    assert entries(client, app) == []


def test_delay_and_eta_go_to_the_delayed_set_scored_by_due_time(app, client):
    @app.task
    def job(a): ...

    before = protocol.now_ms()
    job.send_with(args=(1,), delay=30)
    job.send_with(args=(2,), delay=timedelta(minutes=2))
    eta = datetime.now(timezone.utc) + timedelta(hours=1)
    job.send_with(args=(3,), eta=eta)
    assert entries(client, app) == []
    scored = client.zrange(app.keys("default").delayed, 0, -1, withscores=True)
    due = {protocol.decode(body).args[0]: score for body, score in scored}
    assert before + 30_000 <= due[1] <= protocol.now_ms() + 30_000
    assert before + 120_000 <= due[2] <= protocol.now_ms() + 120_000
    assert due[3] == int(eta.timestamp() * 1000)


def test_naive_eta_is_refused(app):
    @app.task
    def job(): ...

    with pytest.raises(ConfigurationError, match="timezone-aware"):
        job.send_with(eta=datetime.now())


def test_unreachable_redis_is_one_clear_line_without_password(redis_server):
    from streamwork.testing import free_port

    app = App(f"redis://user:s3cret@127.0.0.1:{free_port()}/0")

    @app.task
    def job(): ...

    with pytest.raises(ConnectionFailed) as info:
        job.send()
    text = str(info.value)
    assert "cannot reach Redis at redis://user:***@127.0.0.1" in text
    assert "(given to App() or with --url)" in text and "is redis-server running there?" in text
    assert "s3cret" not in text and "\n" not in text

    async def send_async():
        await job.send_async()

    with pytest.raises(ConnectionFailed):
        asyncio.run(send_async())


def test_apps_with_different_namespaces_do_not_share_queues(redis_url, client):
    first, second = App(redis_url, namespace="one"), App(redis_url, namespace="two")
    first.task(name="job")(lambda: None).send()
    assert client.xlen("one:{default}:stream") == 1
    assert client.exists("two:{default}:stream") == 0
    assert second.keys("default").stream == "two:{default}:stream"


def test_send_with_key_enqueues_once_and_returns_the_first_handle(app, client):
    @app.task
    def charge(order_id, amount): ...

    first = charge.send_with(args=(1, 99), key="order-1")
    again = charge.send_with(args=(1, 99), key="order-1")
    other = charge.send_with(args=(2, 10), key="order-2")
    assert (first.is_duplicate, again.is_duplicate, other.is_duplicate) == (False, True, False)
    assert again.id == first.id
    assert [protocol.decode(f[b"m"]).id for _, f in entries(client, app)] == [first.id, other.id]
    ttl = client.pttl(app.keys("default").dedupe("order-1"))
    assert 86_000_000 < ttl <= 86_400_000


def test_idempotency_key_expires_after_its_ttl(app, client):
    from streamwork.testing import wait_until

    @app.task
    def charge(order_id): ...

    charge.send_with(args=(1,), key="k", key_ttl=0.1)
    wait_until(lambda: not client.exists(app.keys("default").dedupe("k")), timeout=5)
    assert not charge.send_with(args=(1,), key="k").is_duplicate
    assert len(entries(client, app)) == 2


def test_racing_producers_with_one_key_enqueue_exactly_one(app, client, redis_url):
    from concurrent.futures import ThreadPoolExecutor

    apps = [App(redis_url) for _ in range(8)]
    tasks = [a.task(name="charge")(lambda order_id: None) for a in apps]
    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(lambda t: t.send_with(args=(1,), key="pay-1"), tasks * 10))
    assert len({h.id for h in handles}) == 1
    assert sum(not h.is_duplicate for h in handles) == 1
    assert len(entries(client, app)) == 1


async def test_send_with_key_async_and_delayed(app, client):
    @app.task
    def charge(order_id): ...

    first = await charge.send_with_async(args=(1,), key="a", delay=60)
    again = await charge.send_with_async(args=(1,), key="a", delay=60)
    await app.aclose()
    assert again.is_duplicate and again.id == first.id
    assert client.zcard(app.keys("default").delayed) == 1
    assert entries(client, app) == []


def test_producers_count_and_time_their_sends(app):
    from prometheus_client import REGISTRY

    def sent():
        return REGISTRY.get_sample_value("streamwork_sent_total", {"queue": "billing"}) or 0

    def timed():
        return REGISTRY.get_sample_value("streamwork_send_seconds_count", {"queue": "billing"}) or 0

    @app.task(queue="billing")
    def charge(n): ...

    before, batches = sent(), timed()
    charge.send(1)
    charge.send_many(range(10))
    app.publish("billing", {"n": 1})  # a topic of the same name counts under its name too
    assert sent() == before + 12
    assert timed() == batches + 3


def test_a_plain_send_writes_what_send_with_writes(app, client):
    """`send(*args)` with nothing to plan takes a short path (Routing.plain_send): the same
    message, the same id scheme, the same checks as `send_with` and `send_async`."""

    @app.task(queue="emails", priority="high")
    def job(a, b=0): ...

    handles = [job.send(1, b=2), job.send_with(args=(1,), kwargs={"b": 2})]
    handles.append(asyncio.run(job.send_async(1, b=2)))
    rows = entries(client, app, "emails")  # the task's band: none of them asked for it
    assert rows == [] and len(client.xrange(app.keys("emails").band_stream("high"))) == 3
    rows = client.xrange(app.keys("emails").band_stream("high"))
    sent = [replace(protocol.decode(f[b"m"]), enqueued_ms=0) for _, f in rows]
    assert sent[0] == sent[1] == sent[2] and sent[0].id == ""
    assert [h.id for h in handles] == [ids.from_entry("emails", "high", e) for e, _ in rows]
    assert not any(h.is_duplicate for h in handles)
    with pytest.raises(BadArguments):
        job.send(1, 2, 3)
    small = App(app.url, max_message_bytes=200)
    big = small.task(queue="emails", name="job")(lambda a: None)
    with pytest.raises(EncodeError, match=r"a message of task 'job' is .* over max_message_bytes"):
        big.send("x" * 300)
    small.close()
    assert len(client.xrange(app.keys("emails").band_stream("high"))) == 3
