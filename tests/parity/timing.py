"""Checks on when handlers started, that a loaded machine can't fail."""


def assert_never_early(starts_ms, since_ms, per_second, burst=1):
    """The k-th handler start (in order) is never before the k-th admission the rate
    allows: `burst` at once, then one each 1/per_second, counted from `since_ms` (taken
    before the messages were sent). Admissions are spaced on Redis's clock and a handler
    starts at or after its admission, however loaded the machine: a late start can't fail
    this, an early one always does (1 ms of slack for the clocks' rounding)."""
    interval = 1000 / per_second
    for k, start in enumerate(sorted(starts_ms)):
        allowed = since_ms + max(0, k - burst + 1) * interval
        assert start >= allowed - 1, f"start {k} came {allowed - start:.0f} ms early"


def assert_sends_keep_the_rate(app, task, starts, count, per_second, burst=1):
    """Send `count` messages of `task` (whose handler appends protocol.now_ms() to
    `starts`), run them with the test clock jumping to each hold's end, and check that
    every one ran and none started before the rate allowed it."""
    from streamwork._base import protocol
    from streamwork.testing import run_until_idle

    since = protocol.now_ms()
    for n in range(count):
        task.send(n)
    run_until_idle(app, advance_time=True)
    assert len(starts) == count
    assert_never_early(starts, since, per_second=per_second, burst=burst)
