"""The web server, assembled in one place: one `Service`, the JSON API, the dashboard, the
security guards and JSON errors, on waitress. `lmscope serve` calls `serve`; tests and embedders
call `api_app` (the API alone) or `dashboard_app` (the page with the API on its server).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from dash import Dash
from dash.exceptions import DependencyException
from flask import Flask, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from ..api import create_blueprint
from ..core.catalog import entry as catalog_entry
from ..core.catalog import terms_path
from ..core.devices import Placement
from ..core.errors import LmscopeError
from ..core.model_cache import ModelCache
from ..dashboard.app import create_app as create_dashboard
from ..service import Service
from . import security
from .security import allowed_hosts as hosts_for
from .wsgi import BODY_TOO_LARGE, MAX_BODY_BYTES, make_server

API = "/api"


def install(
    app: Flask,
    service: Service,
    allowed_hosts: Iterable[str] | None = None,
    script_sources: Callable[[], Iterable[str]] | Iterable[str] = (),
) -> None:
    """Mount the API, JSON error handling and the security guards on a Flask app.

    `allowed_hosts`: the Host values answered (default: loopback names on any port);
    `script_sources`: extra CSP script sources (the dashboard's inline-script hashes).
    """
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    security.install(app, allowed_hosts, script_sources)
    app.register_blueprint(create_blueprint(service))

    @app.before_request
    def api_paths_are_the_api() -> tuple | None:
        """A path under /api that no API route takes (`/api/`, `/api//models`) is a JSON 404,
        not the page the dashboard serves for every other path."""
        under_api = request.path == API or request.path.startswith(API + "/")
        if under_api and not (request.endpoint or "").startswith("api."):
            return jsonify({"error": f"No API route {request.path} (see docs/api.md)."}), 404
        return None

    @app.get("/terms/<path:model_id>")
    def terms(model_id: str):
        """The terms a catalog model's weights come under, as its package ships them."""
        entry = catalog_entry(model_id)
        path = terms_path(entry) if entry is not None else None
        if path is None:
            return jsonify({"error": f"No terms are shipped for {model_id[:100]!r}."}), 404
        return send_file(path, mimetype="text/html")

    @app.errorhandler(LmscopeError)
    def lmscope_error(error: LmscopeError):
        return jsonify({"error": str(error)}), error.status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge):
        return jsonify({"error": BODY_TOO_LARGE}), 413

    @app.errorhandler(DependencyException)
    def unknown_asset(error: DependencyException):
        """A script path Dash does not serve (any site's <img> can ask): a 404, logged in one
        line, not a traceback."""
        app.logger.info("no such asset: %s", request.path[:200])
        return jsonify({"error": NotFound.description}), 404

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith(API + "/"):
            return jsonify({"error": error.description}), error.code
        return error

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        """A bug must not take the server down: log it, answer 500, keep serving. A dashboard
        callback fails only on the state the browser sent (ids, stores): that is a 400."""
        if request.path.endswith(security.DASH_UPDATE):
            app.logger.exception("dashboard callback failed on its input")
            why = f"the page's state could not be used ({type(error).__name__})"
            return jsonify({"error": security.BAD_UPDATE.format(why=why)}), 400
        if not request.path.startswith(API + "/"):
            raise error
        app.logger.exception("unexpected error in %s", request.path)
        return jsonify(
            {"error": f"Internal error ({type(error).__name__}); the server keeps running."}
        ), 500


def api_app(service: Service | None = None, allowed_hosts: Iterable[str] | None = None) -> Flask:
    """The JSON API alone. `allowed_hosts` defaults to the loopback names on any port
    (`security.allowed_hosts` gives the set for one bound address)."""
    app = Flask("lmscope.api")
    install(app, service or Service(), allowed_hosts)
    return app


def dashboard_app(
    service: Service | None = None,
    model: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> Dash:
    """The dashboard over `service` with the API on the same server, opening on `model` (else
    the service's served model, else GPT-2 with its fall-backs, see `Service.serve`)."""
    service = service or Service()
    if model or service.served is None:
        service.serve(model)
    app = create_dashboard(service)
    install(app.server, service, allowed_hosts, script_sources=app.csp_hashes)
    return app


def serve(
    model: str | None,
    host: str = "127.0.0.1",
    port: int = 8050,
    allowed_hosts: Iterable[str] = (),
    placement: Placement | None = None,
) -> int:
    """Run the dashboard and the API on waitress (the `lmscope serve` command); the operator may
    name a local folder or file. Only Host headers naming host:port (or `allowed_hosts`) are
    answered. Every model is loaded with `placement` (the operator's --device and --dtype)."""

    def say(line: str) -> None:
        print(f"… {line}", file=sys.stderr, flush=True)

    service = Service(ModelCache(placement=placement))
    notice = service.serve(model, say)
    if notice:
        say(notice)
    if host in security.WILDCARD_BINDS:
        print(
            f"warning: binding to {host or 'all interfaces'} makes lmscope reachable from other "
            "machines; it has no authentication. Other machines must name it as given with "
            "--allowed-host.",
            file=sys.stderr,
        )
    app = dashboard_app(service, allowed_hosts=hosts_for(host, port, allowed_hosts))
    server = make_server(app.server, host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"lmscope dashboard on http://{shown}:{port}/", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        server.close()
    return 0
