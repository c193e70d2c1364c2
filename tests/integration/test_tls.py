"""TLS: the same app over rediss://, with the CA and a client certificate given in the URL."""

import subprocess

import pytest

from streamwork import App, ConnectionFailed
from streamwork.ops.stats import queue_state
from streamwork.testing import RedisServer, drain, free_port


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    server = RedisServer(
        ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "yes"]
    ).start()  # fmt: skip
    query = f"ssl_ca_certs={cert}&ssl_certfile={cert}&ssl_keyfile={key}"
    yield f"rediss://127.0.0.1:{tls_port}/0?{query}", f"rediss://127.0.0.1:{tls_port}/0"
    server.cleanup()


def test_tasks_run_over_tls_with_a_client_certificate(tls_redis):
    url, _ = tls_redis
    app = App(url)
    seen = []

    @app.task(queue="secure")
    def job(n):
        seen.append(n)

    job.send_many(range(20))
    job.send(20)
    assert drain(app) == 21
    assert sorted(seen) == list(range(21))
    assert queue_state(app, "secure").is_empty


def test_tls_without_the_ca_is_a_clear_error(tls_redis):
    _, bare = tls_redis
    app = App(bare)
    with pytest.raises(ConnectionFailed, match=r"cannot reach Redis at rediss://127\.0\.0\.1"):
        app.task(name="job")(lambda: None).send()


def test_the_backlog_is_read_over_tls_with_a_private_ca(tls_redis):
    """What `streamwork exporter` reads for KEDA: the URL's CA and client certificate are
    all it needs (KEDA itself never reaches Redis)."""
    from streamwork.ops.backlog import backlog

    url, _ = tls_redis
    app = App(url)
    job = app.task(queue="secure-backlog", name="job")(lambda n: None)
    job.send_many([(n,) for n in range(3)])
    assert backlog(app).as_dict()["queues"]["secure-backlog"]["ready"] == 3
    app.close()
