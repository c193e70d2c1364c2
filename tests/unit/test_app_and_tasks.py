import json

import pytest

from streamwork import App, BadArguments, ConfigurationError, Message, StreamworkError
from streamwork._redis import memory
from streamwork._redis.urls import DEFAULT_URL, default_replies, redact


def test_url_comes_from_argument_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("STREAMWORK_REDIS_URL", "redis://env-host:6380/2")
    assert App("redis://arg:1/0").url == "redis://arg:1/0"
    assert App().url == "redis://env-host:6380/2"
    monkeypatch.delenv("STREAMWORK_REDIS_URL")
    assert App().url == DEFAULT_URL == "redis://localhost:6379/0"


def test_bad_url_scheme_is_a_clear_error_without_the_password():
    with pytest.raises(ConfigurationError, match="redis://, rediss://") as info:
        App("http://user:s3cret@host/0")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://user:s3cret@host:notaport/0", "Port could not be cast to integer"),
        ("redis://host:99999/0", "Port out of range"),
        ("rediss://host:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis+cluster://h1:7000,h2:seven/0", "Port could not be cast to integer"),
    ],
)
def test_a_malformed_url_is_a_configuration_error_naming_where_it_came_from(
    monkeypatch, url, reason
):
    with pytest.raises(ConfigurationError) as info:
        App(url)
    text = str(info.value)
    assert text.startswith("invalid Redis URL") and reason in text, text
    assert "(given to App() or with --url)" in text and "s3cret" not in text
    monkeypatch.setenv("STREAMWORK_REDIS_URL", url)
    with pytest.raises(ConfigurationError, match=r"\(from \$STREAMWORK_REDIS_URL\)"):
        App()


def test_well_formed_urls_of_every_kind_are_accepted():
    for url in (
        "redis://localhost",
        "redis://[::1]:6379/0",
        "unix:///tmp/redis.sock?db=1",
        "rediss://u:p@host:6380/0?ssl_cert_reqs=none",
        "redis+cluster://h1:7000,h2:7001/0",
        "memory://anything",
    ):
        assert App(url).url == url


def test_redact_hides_passwords_only():
    assert redact("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("redis://:pw@host/1") == "redis://:***@host/1"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"
    assert "pw" not in redact("redis://u:pw@h/0?password=pw")


def test_clients_are_made_with_default_reply_shapes_keeping_the_urls_other_options():
    assert default_replies("redis://h:1/0?protocol=3") == "redis://h:1/0"
    assert (
        default_replies("rediss://h/0?protocol=3&ssl_cert_reqs=none")
        == "rediss://h/0?ssl_cert_reqs=none"
    )
    assert default_replies("redis://a:1,b:2/0?x=1&protocol=3&y=2") == "redis://a:1,b:2/0?x=1&y=2"
    assert default_replies("redis://h/0?legacy_responses=false") == "redis://h/0"
    assert default_replies("redis://h/0?xprotocol=3") == "redis://h/0?xprotocol=3"


def test_task_decorator_bare_and_with_options():
    app = App("redis://localhost:1/0")

    @app.task
    def plain(x): ...

    @app.task(queue="emails", max_retries=7, name="mail.send")
    async def send(to, subject="hi"): ...

    assert app.tasks == {"plain": plain, "mail.send": send}
    assert plain.options.queue == "default"
    assert (send.options.queue, send.options.max_retries, send.is_async) == ("emails", 7, True)
    assert app.queues() == ["default", "emails"]
    assert plain(3) is None  # calling a task runs the function here


def test_duplicate_task_names_are_refused():
    app = App("redis://localhost:1/0")

    @app.task
    def job(): ...

    with pytest.raises(ConfigurationError, match="already taken"):
        app.task(name="job")(lambda: None)


def test_manual_ack_needs_bind():
    app = App("redis://localhost:1/0")
    with pytest.raises(ConfigurationError, match="needs bind=True"):
        app.task(ack_mode="manual")(lambda message: None)
    with pytest.raises(ConfigurationError, match="ack_mode must be one of"):
        app.task(ack_mode="sometimes")(lambda: None)


def test_arguments_that_do_not_fit_fail_before_anything_is_sent():
    app = App("redis://localhost:1/0")  # nothing listens there: a send would fail differently

    @app.task
    def send_email(to: str, subject: str) -> None: ...

    with pytest.raises(BadArguments, match=r"send_email\(\): missing a required argument"):
        send_email.send("a@example.com")
    with pytest.raises(BadArguments, match="unexpected keyword argument 'cc'"):
        send_email.send("a", "b", cc="c")
    with pytest.raises(BadArguments, match="too many positional"):
        send_email.send_many([("a", "b"), ("a", "b", "c")])


def test_bound_task_signature_skips_the_message():
    app = App("redis://localhost:1/0")

    @app.task(bind=True)
    def job(message: Message, n: int): ...

    job.check_arguments((1,), {})
    with pytest.raises(BadArguments):
        job.check_arguments((), {})


def test_message_ack_outside_manual_mode_is_an_error():
    message = Message(id="x", entry_id="1-0", queue="q", task="t")
    with pytest.raises(StreamworkError, match="not in manual ack mode"):
        message.ack()


def test_message_decides_once():
    decisions = []
    message = Message(
        id="x", entry_id="1-0", queue="q", task="t", decide=lambda m, d, r, why: decisions.append(d)
    )
    message.ack()
    with pytest.raises(StreamworkError, match="already acked"):
        message.nack()
    assert decisions == ["ack"]


@pytest.mark.parametrize("name", ["", "send email", "job\nINFO forged", "émail"])
def test_task_names_are_checked_at_declaration(name):
    app = App("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match=r"invalid task name .*ASCII"):

        @app.task(name=name)
        def job():
            pass


def test_queue_name_error_says_ascii():
    app = App("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match="ASCII letters"):

        @app.task(queue="émails")
        def job():
            pass


def test_handler_options_are_checked_where_they_are_declared():
    app = App("redis://127.0.0.1:1/0", max_retries=7)
    with pytest.raises(
        ConfigurationError,
        match=r"unknown handler option\(s\): max_retry \(did you mean max_retries\?\)",
    ):
        app.task(max_retry=2)(lambda: None)
    with pytest.raises(ConfigurationError, match="max_deliveries must be a whole number >= 1"):
        app.subscriber("t", group="g", max_deliveries=0)(lambda message: None)
    declared = app.task(name="job", timeout=2)(lambda: None)
    assert (declared.options.max_retries, declared.options.timeout) == (7, 2.0)
    listener = app.subscriber("t", group="g", ack_mode="manual")(lambda message: None)
    assert (listener.options.ack_mode, listener.options.bind) == ("manual", True)


def test_send_many_items_from_json_fail_naming_the_item_and_send_nothing():
    app = App("memory://unit-send-many")
    try:
        _send_many_items(app)
    finally:  # fakeredis keeps the traceback of a script's first NOSCRIPT, and the App
        app.close()  # with it, while its server lives: no App outlives the test
        memory.forget(app.url)


def _send_many_items(app):

    @app.task
    def place(order_id, item, quantity=1): ...

    @app.task
    def total(values): ...

    items = json.loads('[[1, "apple"], [2, "pear", 3]]')  # lists, not tuples
    with pytest.raises(BadArguments) as raised:
        place.send_many(items)
    assert str(raised.value) == (
        "send_many item 0: place(): missing a required argument: 'item' (a list is one "
        "argument; for positional arguments give a tuple, e.g. tuple(item))"
    )
    with pytest.raises(BadArguments, match=r"^send_many item 2: place\(\): too many"):
        place.send_many([(1, "apple"), {"order_id": 2, "item": "pear"}, (3, "fig", 1, 9)])
    assert app.connection.redis.xlen(app.keys("default").stream) == 0  # nothing was sent
    assert len(place.send_many(tuple(item) for item in items)) == 2
    assert len(total.send_many([[1, 2], [3]])) == 2  # a list that fits as one argument
    assert app.connection.redis.xlen(app.keys("default").stream) == 4
