"""The production WSGI server behind `lmscope serve`: waitress, with bounded threads and timeouts.

Idle or slow connections are closed after `LMSCOPE_CHANNEL_TIMEOUT` seconds (default 60), at most
`LMSCOPE_THREADS` requests run at once (default 8; forward passes still take turns, see
`core.trace.pass_slot`), at most 100 connections are open, and no `Server` banner is sent.
"""

from __future__ import annotations

import os

from waitress.server import BaseWSGIServer, create_server

from .disconnect import cancel_on_disconnect

DEFAULTS = {"threads": 8, "channel_timeout": 60}
LOOKAHEAD = 1  # requests read ahead per connection: lets waitress see a client hang up mid-request
CONNECTION_LIMIT = 100
MAX_BODY_BYTES = 2_000_000  # the API refuses bodies over 1 MB itself (413); this caps the rest
MAX_HEADER_BYTES = 64_000


def settings() -> dict:
    """Waitress' adjustments: environment overrides (`LMSCOPE_THREADS`, `LMSCOPE_CHANNEL_TIMEOUT`)."""
    found = {}
    for name, default in DEFAULTS.items():
        raw = os.environ.get(f"LMSCOPE_{name.upper()}", "")
        found[name] = int(raw) if raw.strip().isdigit() and int(raw) > 0 else default
    return found | {
        "cleanup_interval": max(1, min(30, found["channel_timeout"] // 2)),  # idle sockets checked
        "connection_limit": CONNECTION_LIMIT,
        "channel_request_lookahead": LOOKAHEAD,
        "max_request_body_size": MAX_BODY_BYTES,
        "max_request_header_size": MAX_HEADER_BYTES,
        "ident": "",  # no Server header: no version banner
        "clear_untrusted_proxy_headers": True,
        "expose_tracebacks": False,
    }


def make_server(app, host: str, port: int) -> BaseWSGIServer:
    """A waitress server for the WSGI `app` on host:port (0 = a free port); `.run()` serves,
    `.close()` stops, `.effective_port` is the port bound."""
    return create_server(cancel_on_disconnect(app), host=host, port=port, **settings())
