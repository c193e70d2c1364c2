"""The web console (the `web` extra): `streamwork web MODULE:APP`, or `asgi_app(app)` to
mount it in an ASGI application of your own.

What it owns: pages that show what an app's Redis holds (queues, dead letters, tasks,
schedules, workflows, workers, a live event tail) and buttons that act on it through the
same functions as the CLI. What it never does: keep data of its own (a restart loses
nothing), run handlers, or show a Redis password.

- console.py: routes, pages, actions, the token/CSRF/read-only checks;
- views.py: the reads behind each page, bounded whatever the size of a stream;
- security.py: the token and CSRF values;
- templates/ and static/: server-rendered HTML (autoescaped), our own CSS and script.
"""

from .console import asgi_app

__all__ = ["asgi_app"]
