from datetime import timedelta

import pytest

from streamwork import Backoff, ConfigurationError, WorkerSettings
from streamwork._base.keys import QueueKeys, check_name, queue_registry


def test_every_key_of_a_queue_shares_its_hash_tag():
    keys = QueueKeys("sw", "emails")
    names = [keys.stream, keys.delayed, keys.dead_letters, keys.result("abc"), keys.dedupe("k")]
    assert all(name.startswith("sw:{emails}:") for name in names)
    assert len(set(names)) == len(names)


def test_registry_key_is_per_namespace():
    assert queue_registry("sw") != queue_registry("other")


@pytest.mark.parametrize("bad", ["", "a b", "with{brace}", "x" * 201, None, 5])
def test_bad_queue_names_are_refused(bad):
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        check_name("queue", bad)


def test_good_queue_names_pass():
    assert check_name("queue", "orders.created:v2-eu_1") == "orders.created:v2-eu_1"


def test_backoff_grows_exponentially_within_jitter_and_cap():
    backoff = Backoff(base=1, cap=10)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (50, 10)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered


def test_durations_accept_timedelta_and_refuse_nonsense():
    assert WorkerSettings(visibility_timeout=timedelta(minutes=2)).visibility_timeout == 120.0
    assert Backoff(base=timedelta(milliseconds=500)).base == 0.5
    with pytest.raises(ConfigurationError, match="visibility_timeout must be > 0"):
        WorkerSettings(visibility_timeout=0)
    with pytest.raises(ConfigurationError, match="seconds or a timedelta"):
        WorkerSettings(block="1s")
    with pytest.raises(ConfigurationError, match="concurrency must be at least 1"):
        WorkerSettings(concurrency=0)


def test_scan_and_lease_intervals_follow_the_visibility_timeout():
    settings = WorkerSettings(visibility_timeout=30)
    assert settings.scan_interval == 15
    assert settings.lease_interval == 10


def test_wait_until_says_what_it_waited_for_and_what_it_saw():
    import pytest

    from streamwork.testing import wait_until

    seen = []
    with pytest.raises(TimeoutError) as raised:
        wait_until(lambda: seen.append(1) or len(seen) > 10**9, timeout=0.05)
    text = str(raised.value)
    assert "len(seen) > 10**9" in text and "last value seen was False" in text
    with pytest.raises(TimeoutError, match="the queue to drain; the last value seen was 0"):
        wait_until(lambda: 0, timeout=0.01, message="the queue to drain")
