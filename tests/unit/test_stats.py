from streamwork.ops.stats import QueueState, flow


def state(at, **totals):
    return QueueState(
        "q", ready=totals.pop("ready", 0), pending=0, delayed=0, dead_letters=0, at=at, **totals
    )


def test_rates_and_littles_law_over_an_interval():
    before = state(0.0, added=100, done=80, runs=80, waited=80, wait_ms=8_000, run_ms=4_000)
    after = state(
        2.0,
        added=300,
        done=270,
        dead=10,
        runs=280,
        waited=280,
        wait_ms=48_000,
        run_ms=24_000,
        ready=40,
    )
    result = flow(before, after)
    assert result.arrival_rate == 100  # 200 added in 2 s
    assert result.completion_rate == 100  # (190 done + 10 dead) in 2 s
    assert result.wait == 0.2  # 40 s of waiting over 200 runs
    assert result.run_time == 0.1
    assert abs(result.expected_backlog - 20.0) < 1e-9  # L = λW = 100/s * 0.2 s
    assert abs(result.busy_handlers - 10.0) < 1e-9  # λS = 100/s * 0.1 s


def test_quiet_interval_falls_back_to_lifetime_averages():
    before = state(0.0, added=10, done=10, runs=10, waited=10, wait_ms=5_000, run_ms=1_000)
    after = state(1.0, added=10, done=10, runs=10, waited=10, wait_ms=5_000, run_ms=1_000)
    result = flow(before, after)
    assert (result.arrival_rate, result.wait, result.run_time) == (0, 0.5, 0.1)
    assert result.expected_backlog == 0


def test_no_runs_ever_means_unknown_wait():
    result = flow(state(0.0), state(1.0, added=5))
    assert result.wait is None and result.expected_backlog is None and result.busy_handlers is None
    assert result.arrival_rate == 5
