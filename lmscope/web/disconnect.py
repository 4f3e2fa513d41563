"""A request whose client has gone stops: each request runs as a `core.jobs.Job` whose client is
gone once waitress sees the connection closed (`waitress.client_disconnected`, reported when the
server reads ahead on its connections, see api/server.py). Elsewhere (another WSGI server) a
request runs to its end."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..core import jobs

DISCONNECTED = "waitress.client_disconnected"


def cancel_on_disconnect(app: Callable) -> Callable:
    """Wrap the WSGI `app`: the library's checks stop a request whose client closed its connection."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        gone = environ.get(DISCONNECTED)
        if gone is None:
            return app(environ, start_response)
        with jobs.running(jobs.Job("request", stale=gone)):
            return app(environ, start_response)

    return wrapped
