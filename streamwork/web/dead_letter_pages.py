"""The console's dead letter pages: the index of every queue's and group's dead letters, one
queue's (searchable, by partition), one dead letter, and the replay and purge actions (a
base class of Console; what they need of it is declared here).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from .._app.app import App
from .._base.keys import Source, base_queue, partition_number
from .._redis import reads, registry
from ..ops import dead_letters
from . import views
from .requests import ENTRY_ID, HTTPProblem, check_name, dlq_location, matches


class DeadLetterPages:
    """The dead letter pages of the console (a base class of Console)."""

    app: App

    def _source(self, request: Request, form: FormData | None = None) -> Source:
        """The queue (or partition) named in the path, or with `group` (query or form) a
        topic's group."""
        partition = self._partition_source(request)
        if partition is not None:
            return partition
        name = check_name("queue or topic", request.path_params["name"])
        group = (form.get("group") if form is not None else None) or request.query_params.get(
            "group"
        )
        kind, known = (
            ("topic", registry.known_topics) if group else ("queue", registry.known_queues)
        )
        if name not in known(self.app):
            raise HTTPProblem(404, f"no {kind} {name!r} in namespace {self.app.namespace!r}")
        if group:
            return self.app.topic_source(name, check_name("group", str(group)))
        return self.app.queue_source(name)

    def _partition_source(self, request: Request) -> Source | None:
        """One partition of a partitioned queue, named in the path (`orders~3`), or None."""
        name = request.path_params["name"]
        number = partition_number(name)
        if number is None:
            return None
        queue = check_name("queue", base_queue(name))
        if not number < self.app.partitions(queue) or queue not in registry.known_queues(self.app):
            raise HTTPProblem(404, f"no partition {name!r} in namespace {self.app.namespace!r}")
        return self.app.queue_source(name)

    def read_dlq_index(self, request: Request) -> dict[str, Any]:
        rows = []
        queues = registry.known_queues(self.app)
        # a partitioned queue's dead letters: a row per partition (`orders~3`)
        sources = [
            (source.name, None, source)
            for queue in queues
            for source in (
                self.app.queue_sources(queue)
                if self.app.partitions(queue) > 1
                else [self.app.queue_source(queue)]
            )
        ] + [(t, g, self.app.topic_source(t, g)) for t, g in self.app.subscriber_groups()]
        client = self.app.connection.redis
        with self.app.connection.translate_errors():
            counts = reads.lengths(client, [source.dead_letters for _, _, source in sources])
        for (name, group, _), count in zip(sources, counts, strict=True):
            rows.append({"name": name, "group": group, "count": int(count)})
        return {"rows": rows}

    def read_dead_letters(self, request: Request) -> dict[str, Any]:
        source = self._source(request)
        params = request.query_params
        before = params.get("before") or None
        if before is not None and not matches(ENTRY_ID, before):
            raise HTTPProblem(400, f"{before!r} is not a stream entry id")
        task, text = params.get("task", "").strip(), params.get("q", "").strip()
        found = dead_letters.search(
            self.app.connection, source, task=task or None, text=text or None, before=before
        )
        return {
            "name": request.path_params["name"],
            "group": source.group if source.topic else None,
            "source": source,
            "found": found,
            "total": dead_letters.count(self.app.connection, source),
            "task": task,
            "text": text,
            "before": before,
            "why": dead_letters.describe,
        }

    def read_dead_letter(self, request: Request) -> dict[str, Any]:
        source = self._source(request)
        entry_id = request.path_params["entry_id"]
        if not matches(ENTRY_ID, entry_id):
            raise HTTPProblem(400, f"{entry_id!r} is not a stream entry id")
        entry = dead_letters.show(self.app.connection, source, entry_id)
        data = entry.as_dict()
        message = data["message"]
        shown = (
            {name: views.show_value(message[name]) for name in ("args", "kwargs", "headers")}
            if isinstance(message, dict)
            else {"raw": message}
        )
        return {
            "name": request.path_params["name"],
            "group": source.group if source.topic else None,
            "entry": entry,
            "letter": entry.letter,
            "shown": shown,
            "why": dead_letters.describe,
        }

    def replay(self, request: Request, form: FormData) -> tuple[str, str]:
        source = self._source(request, form)
        name = request.path_params["name"]
        ids = [str(value) for value in form.getlist("ids")]
        for entry_id in ids:
            if not matches(ENTRY_ID, entry_id):
                raise HTTPProblem(400, f"{entry_id!r} is not a stream entry id")
        if form.get("all"):
            match = dead_letters.matcher(
                str(form.get("task") or "") or None, str(form.get("q") or "") or None
            )
            report = dead_letters.replay(
                self.app.connection, source, None, self.app.status_ttl_ms, match
            )
        elif ids:
            report = dead_letters.replay(self.app.connection, source, ids, self.app.status_ttl_ms)
        else:
            raise HTTPProblem(400, "nothing to replay: choose dead letters, or all matching")
        message = f"replayed {report.replayed} dead letter(s) onto {source.name!r}"
        if report.skipped:
            message += f"; left {len(report.skipped)} undecodable one(s) in place"
        if report.missing:
            message += f"; {len(report.missing)} were no longer there"
        return dlq_location(name, source), message

    def purge_dead_letters(self, request: Request, form: FormData) -> tuple[str, str]:
        source = self._source(request, form)
        purged = dead_letters.purge(self.app.connection, source)
        location = dlq_location(request.path_params["name"], source)
        return location, f"purged {purged} dead letter(s) from {source.name!r}"
