"""Defences of a local web tool that any page the user visits can reach (see docs/security.md).

Installed on the Flask server under both the bare API and the dashboard: a Host check (DNS
rebinding), an Origin check on state-changing requests (CSRF), response headers (CSP, framing,
sniffing, referrer), gzip/brotli/zstd compression, and a first look at dashboard callback bodies
(shape, client id length, JSON depth) so that nonsense is refused with a 400 before Dash sees it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable
from threading import Lock

from flask import Flask, Response, jsonify, request
from flask_compress import Compress

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
DEFAULT_HOSTS = frozenset(LOOPBACK_NAMES)  # loopback on any port: test clients, embedded servers
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DASH_UPDATE = "/_dash-update-component"
MAX_ID_LENGTH = 64
CLIENT_ID = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}$")

HOST_REFUSED = (
    "This server does not answer to the host name {host!r} (a guard against DNS rebinding); "
    "start it with --allowed-host NAME to allow that name."
)
ORIGIN_REFUSED = "Refused: this request comes from another site ({origin!r})."
BAD_UPDATE = "This dashboard request is malformed ({why}); reload the page."

# What the dashboard itself needs: its own scripts (plus the hashes of Dash's inline ones), inline
# styles (plotly.js writes <style> elements), data:/blob: images (plot exports), nothing framed.
CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'self'",
}
HEADERS = {
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def error_headers() -> dict[str, str]:
    """The headers of an answer the server writes itself (a refusal before any route runs)."""
    return HEADERS | {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}


def _split(netloc: str) -> tuple[str, str]:
    """`host[:port]` as (lower-case name, port or ''); IPv6 names keep their brackets."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        name, _, rest = netloc.partition("]")
        return name + "]", rest[1:] if rest.startswith(":") else ""
    name, _, port = netloc.partition(":")
    return name.rstrip("."), port


def _host_name(bind: str) -> str:
    """A bind address as it appears in a Host header (`::1` -> `[::1]`)."""
    return f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind.lower()


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host values a server bound to `bind:port` answers: its own address, the loopback names
    on that port when it is reachable on loopback, and `extra` names (`name` = any port)."""
    names = {_host_name(bind)} if bind not in WILDCARD_BINDS else {socket.gethostname().lower()}
    if is_loopback(bind) or bind in WILDCARD_BINDS:
        names.update(LOOPBACK_NAMES)
    return frozenset({f"{name}:{port}" for name in names} | {e.strip().lower() for e in extra})


def host_allowed(netloc: str, hosts: frozenset[str]) -> bool:
    """True if `netloc` (a Host header, or an Origin's host part) is one of `hosts`: an entry
    `name:port` matches exactly, a bare `name` matches that name on any port."""
    name, port = _split(netloc)
    if not name:
        return False
    return name in hosts or f"{name}:{port or '80'}" in hosts


def _refuse(message: str, status: int) -> Response:
    if request.path.startswith("/api/") or request.path.endswith(DASH_UPDATE):
        response = jsonify({"error": message})
    else:
        response = Response(message + "\n", mimetype="text/plain")
    response.status_code = status
    return response


def _items(entries: object) -> Iterable[dict]:
    """Dash's inputs/state entries: dicts, or lists of dicts for wildcard (ALL) ids."""
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, list):
            yield from (e for e in entry if isinstance(e, dict))
        elif isinstance(entry, dict):
            yield entry


def check_dash_update(body: object) -> str | None:
    """Why a `/_dash-update-component` body is malformed, or None if its shape is fine."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if not isinstance(body.get("output"), str) or "outputs" not in body:
        return "no output named"
    for name in ("inputs", "state", "changedPropIds"):
        if not isinstance(body.get(name, []), list):
            return f"'{name}' is not a list"
    for item in (*_items(body.get("inputs")), *_items(body.get("state"))):
        if not isinstance(item.get("property"), str):
            return "an input has no property"
        if item.get("id") == "client" and item.get("property") == "data":
            value = item.get("value")
            if not isinstance(value, str) or not CLIENT_ID.match(value):
                return f"the client id must be 1 to {MAX_ID_LENGTH} letters, digits, - or _"
    return None


class AssetCache:
    """Compressed copies of Dash's fingerprinted component bundles (plotly.js is 4.6 MB), bounded:
    compressed once, not on every page load. Other responses are never cached."""

    def __init__(self, entries: int = 64) -> None:
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._entries = entries
        self._lock = Lock()

    @staticmethod
    def key(req) -> str:
        path = req.path
        return path if "/_dash-component-suites/" in path and not req.query_string else ""

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key) if not key.endswith(";") else None

    def set(self, key: str, value: bytes) -> None:
        if key.endswith(";"):
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)


def install(
    app: Flask,
    hosts: Iterable[str] | None = None,
    script_sources: Callable[[], Iterable[str]] | Iterable[str] = (),
) -> None:
    """Guard every request of `app`: `hosts` are the Host values it answers (default: loopback
    names on any port); `script_sources` are extra CSP script sources (Dash's inline hashes)."""
    allowed = DEFAULT_HOSTS if hosts is None else frozenset(h.lower() for h in hosts)
    csp_cache: list[str] = []

    def policy() -> str:
        if not csp_cache:
            extra = script_sources() if callable(script_sources) else script_sources
            rules = CSP | {"script-src": " ".join(["'self'", *extra])}
            csp_cache.append("; ".join(f"{k} {v}" for k, v in rules.items()))
        return csp_cache[0]

    @app.before_request
    def guard() -> Response | None:
        host = request.headers.get("Host", "")
        if not host_allowed(host, allowed):
            return _refuse(HOST_REFUSED.format(host=host[:100]), 421)
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("Origin")
            if origin is not None and not _same_site(origin, allowed):
                return _refuse(ORIGIN_REFUSED.format(origin=origin[:100]), 403)
            if request.is_json:
                try:
                    body = request.get_json(silent=True)
                except RecursionError:
                    return _refuse("The JSON body is nested too deeply.", 400)
                if request.path.endswith(DASH_UPDATE):
                    why = check_dash_update(body)
                    if why:
                        return _refuse(BAD_UPDATE.format(why=why), 400)
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy()
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.config.setdefault("COMPRESS_CACHE_BACKEND", AssetCache)
    app.config.setdefault("COMPRESS_CACHE_KEY", AssetCache.key)
    Compress(app)


def _same_site(origin: str, hosts: frozenset[str]) -> bool:
    """An Origin header (`scheme://host[:port]`) naming one of the hosts this server answers."""
    scheme, sep, netloc = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and host_allowed(netloc, hosts)
