"""Run metrics are counted in memory and written once per batch: what a flush writes is what
one prometheus-client call per message would have written."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from streamwork import App
from streamwork._base import metrics


def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in histogram.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_buffered_observations_write_what_observe_writes() -> None:
    registry = CollectorRegistry()
    one_by_one = Histogram("one_by_one", "x", buckets=metrics.BUCKETS, registry=registry)
    buffered = Histogram("buffered", "x", buckets=metrics.BUCKETS, registry=registry)
    observations = metrics._Observations(buffered)
    rng = random.Random(7)
    values = [rng.choice([0, 0.0005, 600.0, 1e6]) for _ in range(50)]
    values += [rng.expovariate(3.0) for _ in range(1000)]
    for value in values:
        one_by_one.observe(value)
        observations.add(value)
    assert samples(buffered)[("buffered_count", "")] == 0  # nothing written before a flush
    observations.flush()
    observations.flush()  # a second flush writes nothing more
    expected = {(name.replace("one_by_one", "buffered"), le): v for (name, le), v in
                samples(one_by_one).items()}  # fmt: skip
    got = samples(buffered)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) < 1e-6, key
    assert got[("buffered_count", "")] == len(values)


def test_run_counts_reach_prometheus_at_flush() -> None:
    source = App("memory://unit-metrics").queue_source("q")
    child = metrics.STARTED.labels("q", "", "t")
    before = child._value.get()
    metrics.run_started(source, "t", 0.01)
    metrics.run_ended(source, "t", 0.02, False)
    metrics.outcome_written(source, "t", "done")
    assert child._value.get() == before
    metrics.flush()
    assert child._value.get() == before + 1
    done = metrics.SUCCEEDED.labels("q", "", "t")._value.get()
    metrics.flush()
    assert metrics.SUCCEEDED.labels("q", "", "t")._value.get() == done
