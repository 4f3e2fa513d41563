"""The production WSGI server behind `lmscope serve`: waitress, bounded so that no client can stop
it answering the others.

- At most `LMSCOPE_THREADS` requests run at once (default 8; forward passes still take turns, see
  `core.trace.pass_slot`) and at most `CONNECTION_LIMIT` connections are open.
- A request must arrive whole within `REQUEST_SECONDS` of its first byte: a client trickling a
  header line every few seconds is cut off, however active it looks.
- Idle connections close after `LMSCOPE_CHANNEL_TIMEOUT` seconds (default 60), and after
  `CROWDED_IDLE_SECONDS` once the server is near its connection limit; a client address holding
  `PER_CLIENT` connections loses its oldest idle one (else its slowest sender) for each new one.
- waitress's own refusals (400, 413, 431) answer JSON with the security headers, and the
  connection drains what the client still sends before it closes (a client sending a 64 MB body
  whole reads its 413 instead of a reset connection).
- No `Server` banner is sent; tracebacks are never exposed.
"""

from __future__ import annotations

import json
import os
import socket
import time

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, TcpWSGIServer
from waitress.task import ErrorTask

from . import security
from .disconnect import cancel_on_disconnect

DEFAULTS = {"threads": 8, "channel_timeout": 60}
LOOKAHEAD = 1  # requests read ahead per connection: lets waitress see a client hang up mid-request
CONNECTION_LIMIT = 100
CROWDED = 0.8  # share of CONNECTION_LIMIT from which idle connections are closed early
CROWDED_IDLE_SECONDS = 2.0
PER_CLIENT = 32  # connections one client address may hold
REQUEST_SECONDS = 15.0  # from a request's first byte to its last
DRAIN_SECONDS = 10.0  # at most this long reading what a refused client still sends
MAX_BODY_BYTES = 1_000_000  # what the API and the dashboard's callbacks accept (413 beyond)
READ_BODY_BYTES = 2_000_000  # what waitress reads before it refuses on its own
MAX_HEADER_BYTES = 64_000
BODY_TOO_LARGE = f"The request body is over this server's limit of {MAX_BODY_BYTES:,} bytes."


def settings() -> dict:
    """Waitress' adjustments: environment overrides (`LMSCOPE_THREADS`, `LMSCOPE_CHANNEL_TIMEOUT`)."""
    found = {}
    for name, default in DEFAULTS.items():
        raw = os.environ.get(f"LMSCOPE_{name.upper()}", "")
        found[name] = int(raw) if raw.strip().isdigit() and int(raw) > 0 else default
    return found | {
        "cleanup_interval": 1,  # how often `GuardedServer.maintenance` looks at every connection
        "connection_limit": CONNECTION_LIMIT,
        "channel_request_lookahead": LOOKAHEAD,
        "max_request_body_size": READ_BODY_BYTES,
        "max_request_header_size": MAX_HEADER_BYTES,
        "ident": "",  # no Server header: no version banner
        "clear_untrusted_proxy_headers": True,
        "expose_tracebacks": False,
    }


class JsonErrorTask(ErrorTask):
    """waitress's own refusal (a malformed or oversized request) as the API's JSON error, with the
    security headers; the connection then drains the rest of the request before closing."""

    def execute(self) -> None:
        error = self.request.error
        text = BODY_TOO_LARGE if error.code == 413 else f"{error.reason}: {error.body}"
        body = json.dumps({"error": text}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(
            [("Content-Type", "application/json"), *security.error_headers().items()]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        self.channel.drain_on_close = True


class GuardedChannel(HTTPChannel):
    """A connection that knows since when its current request has been arriving, and that can
    drain its input before closing (see `JsonErrorTask`)."""

    error_task_class = JsonErrorTask
    partial_since: float | None = None  # the first byte of a request not yet whole
    drain_on_close = False
    draining_since: float | None = None

    def received(self, data: bytes) -> bool:
        before = self.request
        result = super().received(data)
        if self.request is None:
            self.partial_since = None
        elif self.request is not before:
            self.partial_since = time.time()
        return result

    def readable(self) -> bool:
        return True if self.draining_since is not None else super().readable()

    def writable(self) -> bool:
        return False if self.draining_since is not None else super().writable()

    def handle_read(self) -> None:
        if self.draining_since is None:
            super().handle_read()
            return
        try:
            self.recv(self.adj.recv_bytes)  # discarded; an empty read closes (wasyncore.recv)
        except OSError:
            super().handle_close()

    def handle_close(self) -> None:
        """Close; after a refusal, first half-close and read on until the client is done."""
        if self.drain_on_close and self.draining_since is None and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                super().handle_close()
                return
            self.draining_since = time.time()
            self.will_close = False
            return
        super().handle_close()

    @property
    def idle(self) -> bool:
        return not self.requests and self.request is None and self.draining_since is None


class GuardedServer(TcpWSGIServer):
    """waitress's TCP server with `GuardedChannel`s, slow senders cut off, and idle connections
    given up when a client or the whole server holds too many."""

    channel_class = GuardedChannel

    def handle_accept(self) -> None:
        super().handle_accept()
        channels = list(self.active_channels.values())
        newest = max(channels, key=lambda c: c.creation_time, default=None)
        if newest is None:
            return
        peer = _peer(newest)
        same = [c for c in channels if _peer(c) == peer and c is not newest]
        if len(same) >= PER_CLIENT:  # give up its oldest idle one, else its slowest sender
            idle = [c for c in same if c.idle]
            slow = [c for c in same if c.partial_since is not None]
            if idle:
                min(idle, key=lambda c: c.last_activity).will_close = True
            elif slow:
                min(slow, key=lambda c: c.partial_since).will_close = True
            else:  # all of them are being answered: the new one waits its turn elsewhere
                newest.will_close = True

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        crowded = len(self.active_channels) >= CROWDED * self.adj.connection_limit
        for channel in list(self.active_channels.values()):
            if channel.draining_since is not None:
                if now - channel.draining_since > DRAIN_SECONDS:
                    channel.handle_close()
            elif (
                channel.partial_since is not None and now - channel.partial_since > REQUEST_SECONDS
            ):
                channel.will_close = True  # a slow sender: cut off, whatever it still trickles
            elif crowded and channel.idle and now - channel.last_activity > CROWDED_IDLE_SECONDS:
                channel.will_close = True


def _peer(channel: HTTPChannel) -> str:
    address = channel.addr
    return address[0] if isinstance(address, tuple) else str(address)


def make_server(app, host: str, port: int) -> BaseWSGIServer:
    """A guarded waitress server for the WSGI `app` on host:port (0 = a free port); `.run()`
    serves, `.close()` stops, `.effective_port` is the port bound."""
    return GuardedServer(cancel_on_disconnect(app), host=host, port=port, **settings())
