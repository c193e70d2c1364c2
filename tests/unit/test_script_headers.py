"""Each Lua script's header names its KEYS; each Python wrapper passes exactly that many
(BullMQ puts the count in the file name; we check the header against the wrapper)."""

import re
from pathlib import Path

import pytest

from streamwork._base.keys import QueueKeys, ScheduleKeys, WorkflowKeys, queue_source
from streamwork._redis import script_base, scripts
from streamwork._worker.runs import Outcome

HEADER_KEY = re.compile(r"^-- KEYS\[(\d+)(\.\.)?\]", re.MULTILINE)


def declared_keys(name):
    """(the fixed KEYS the header names, whether more may follow)."""
    found = HEADER_KEY.findall(script_base.LUA[name])
    fixed = [int(n) for n, more in found if not more]
    assert fixed == list(range(1, len(fixed) + 1)), f"{name}.lua: KEYS not numbered 1..n"
    return len(fixed), any(more for _, more in found)


class Recorder:
    """Stands in for a redis-py client: records the keys each script is called with."""

    def __init__(self):
        self.calls = {}

    def register_script(self, text):
        name = next(n for n, t in script_base.LUA.items() if t == text)

        def call(keys, args):
            self.calls[name] = keys

        return call


SOURCE = queue_source("sw", "q")
SCHEDULE = ScheduleKeys("sw", "q", "s")
SOURCE_KEYS = QueueKeys("sw", "q")
WORKFLOW = WorkflowKeys("sw", "w")
WITH_RESULT = Outcome("done", b"1-0", result_key="sw:{q}:result:x", result=b"r")
CALLS = {
    "settle": lambda s: s.settle(SOURCE, "c", [WITH_RESULT], is_pending=True, result_ttl_ms=1),
    "move_due": lambda s: s.move_due("d", "s", 0),
    "renew_lease": lambda s: s.renew_lease(SOURCE, "c", [b"1-0"]),
    "remove_idle_consumers": lambda s: s.remove_idle_consumers(SOURCE, 1),
    "cancel": lambda s: s.cancel(SOURCE_KEYS, "i", "", 0, 1),
    "progress": lambda s: s.progress("st", 0.5, "", 0, 1),
    "status": lambda s: s.status(SOURCE_KEYS, "i"),
    "start": lambda s: s.start(
        SOURCE, [("t", 1, "i", b"1-0", "st", "r", 10, 0, "sl", 2, False, "")], "c", 0, 1
    ),
    "release_held": lambda s: s.release_held(SOURCE, "sl", "h", 2, 1000),
    "read_bands": lambda s: s.read_bands(["a", "b", "c"], "g", "c", 10, 0),
    "fair_send": lambda s: s.fair_send(
        "s", "p:", [("i", b"m", "k")], ["st"], ("t", 0, 1, "e", 0), 0
    ),
    "fair_pull": lambda s: s.fair_pull("s", "p:", 10, 0),
    "enqueue": lambda s: s.enqueue(
        "s", "d", "st", "i", b"m", None, ("t", 0, 1, "e", 0), order=("sw:{q}:", "k")
    ),
    "replay": lambda s: s.replay(SOURCE, [(b"1-0", b"m", "i", "t")]),
    "purge": lambda s: s.purge(SOURCE, 1, True, ["k"]),
    "trim_topic": lambda s: s.trim_topic("t", None, None, False),
    "add_many": lambda s: s.add_many("s", "d", [b"m"], ids=["i"], statuses=["st"]),
    "schedule_put": lambda s: s.schedule_put(SCHEDULE, "r", 1, False, "code", {"task": "t"}),
    "schedule_tick": lambda s: s.schedule_tick(SCHEDULE, 1, "r", 2, True, 1, 0, [(1, "i", b"m")]),
    "schedule_state": lambda s: s.schedule_state(SCHEDULE, "pause", None),
    "schedules_due": lambda s: s.schedules_due("sw:{q}:schedules", 0),
    "workflow_record": lambda s: s.workflow_record(WORKFLOW, [(1, True, b"v")], 0),
    "workflow_cancel": lambda s: s.workflow_cancel(WORKFLOW, "", 0),
}


def test_every_script_in_the_folder_has_a_wrapper_call_here():
    assert set(script_base.LUA) == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_wrapper_passes_the_keys_its_script_declares(name):
    recorder = Recorder()
    CALLS[name](scripts.Scripts(recorder))
    fixed, variadic = declared_keys(name)
    passed = len(recorder.calls[name])
    if variadic:
        assert passed > fixed, f"{name}: {passed} keys, header declares {fixed} and more"
    else:
        assert passed == fixed, f"{name}: {passed} keys, header declares {fixed}"


def test_included_parts_are_in_the_scripts_that_include_them():
    for name in ("start", "release_held"):
        assert "local function free_slots(" in script_base.LUA[name]
        assert "#include" not in script_base.LUA[name]
    for name in ("fair_send", "fair_pull"):
        assert "local function fair_pull(" in script_base.LUA[name]
    for name in ("enqueue", "add_many", "cancel", "status"):
        assert "local function recorded_at(" in script_base.LUA[name]
    for name in ("status", "cancel", "progress", "settle"):
        assert "local function status_state(" in script_base.LUA[name]
    assert not [name for name in script_base.LUA if name.startswith("_")]


NUMBERS = {"four": 4, "five": 5, "six": 6, "twelve": 12, "seventeen": 17}


@pytest.mark.parametrize(
    ("script", "row", "fields"),
    [
        ("start", "StartRow", 12),
        ("settle", "SettleValues", 17),
        ("settle", "PlainDoneValues", 6),
    ],
)
def test_each_row_a_script_reads_has_the_values_its_header_counts(script, row, fields):
    """The header says how many values a row has and names the row type that carries them;
    the type has that many fields."""
    from streamwork._redis import rows

    text = (Path(scripts.__file__).parent / "lua" / f"{script}.lua").read_text()
    header = " ".join(line.strip("- ") for line in text.splitlines() if line.startswith("--"))
    said = re.search(rf"(\w+) values(?: each)? \(rows\.py: {row}\)", header)
    assert said is not None, f"{script}.lua does not count the values of {row}"
    assert NUMBERS[said[1]] == len(getattr(rows, row)._fields) == fields
