"""Without a TracerProvider set, sends, runs and settles get no span (a span of the API's
default provider would record nothing and only cost time) — checked in a fresh
interpreter, since the parity tests set a provider for the whole test process."""

import subprocess
import sys

PROGRAM = """
from opentelemetry import trace
from streamwork._base import tracing
assert tracing.ENABLED and not tracing.active()
with tracing.run_span([object()], {}) as span:
    assert span is None
with tracing.send_span("q", {}) as span:
    assert span is None
with tracing.settle_span(object(), 1, {}) as span:
    assert span is None
assert tracing.Creations("q", {}).next() == {}  # no span active: nothing to carry
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
assert tracing.refresh() and tracing.active()
print("ok")
"""


def test_runs_are_traced_only_once_a_tracer_provider_is_set():
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
