"""The Lua scripts loaded: one file per script in lua/ (parts several share in lua/_*.lua,
included where a script says `-- #include NAME`), and `ScriptSet`, which registers them all
on one client or pipeline and runs one by name — on the client, or on a worker's lane.

The typed wrappers are in scripts.py (and schedule_scripts.py); each script's header names
its KEYS and ARGV, which tests check against those wrappers.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from typing import Any

from .lanes import Lane


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms_or_empty(ms: int | None) -> int | str:
    return "" if ms is None else ms


_SCRIPTS = resources.files(__package__).joinpath("lua")
_INCLUDE = re.compile(r"^-- #include (\w+)$", re.MULTILINE)


def _script(text: str) -> str:
    """A script's text with each `-- #include NAME` line replaced by lua/_NAME.lua (a
    function several scripts share: Redis has no modules for Lua)."""
    return _INCLUDE.sub(lambda found: _SCRIPTS.joinpath(f"_{found[1]}.lua").read_text(), text)


LUA = {
    path.name.removesuffix(".lua"): _script(path.read_text())
    for path in sorted(_SCRIPTS.iterdir(), key=lambda p: p.name)
    if path.name.endswith(".lua") and not path.name.startswith("_")
}
"""Every script in lua/, by name (the file name without .lua; files named _*.lua are
parts included by others)."""


class ScriptSet:
    """Every Lua script, registered on one client (EVALSHA, reloaded after NOSCRIPT)."""

    def __init__(self, client: Any) -> None:
        self._scripts = {name: client.register_script(text) for name, text in LUA.items()}
        self._lane: Lane | None = None

    def on_lane(self, lane: Lane | None) -> Any:
        """These scripts with the start and settle steps sent on `lane` (a worker's hot path;
        None: on the client, as every other script)."""
        found = copy.copy(self)
        found._lane = lane
        return found

    def _run(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        if self._lane is not None:
            return self._lane.evalsha(self._scripts[name], keys, args)
        return self._scripts[name](keys=keys, args=args)
