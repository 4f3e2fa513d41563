"""The JSON HTTP API, a Flask blueprint mounted on the dashboard's server.

POST /api/analyze {"model": "gpt2", "prompt": "..."} answers the same document as
`lmscope analyze --json`, plus `analysis_id`; heavy arrays are fetched per head or per layer.
Errors answer a 4xx status with {"error": "..."}; the server stays up. Host, Origin and response
headers are guarded by `security` (docs/security.md).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable

import torch
from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..core.analysis import OVERVIEW
from ..core.embeddings import nearest_tokens
from ..core.errors import LmscopeError, RequestError
from . import security
from .service import Service

MAX_BODY_BYTES = 1_000_000


def _body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise RequestError("The JSON body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise RequestError(
            'The request body must be a JSON object, e.g. {"model": ..., "prompt": ...}.'
        )
    return data


def _int_arg(name: str, upper: int) -> int:
    raw = request.args.get(name, "")
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"'{name}' must be an integer, got {raw!r}.") from None
    if not 0 <= value < upper:
        raise RequestError(f"'{name}' must be between 0 and {upper - 1}, got {value}.")
    return value


def _span(name: str, tokens: int) -> slice:
    """The `a:b` window of positions in `?name=` (the whole prompt when absent), at most OVERVIEW."""
    raw = request.args.get(name, f"0:{min(tokens, OVERVIEW)}")
    try:
        start, stop = (int(part) for part in raw.split(":"))
    except ValueError:
        raise RequestError(f"'{name}' must be two positions 'start:stop', got {raw!r}.") from None
    if not 0 <= start < stop <= tokens or stop - start > OVERVIEW:
        raise RequestError(
            f"'{name}' must be a window start:stop with 0 <= start < stop <= {tokens} and at most "
            f"{OVERVIEW} positions, got {raw!r}."
        )
    return slice(start, stop)


def create_blueprint(service: Service) -> Blueprint:
    """The API's routes over one `Service`."""
    from .experiment_routes import add_experiment_routes  # imports this module's helpers

    api = Blueprint("api", __name__, url_prefix="/api")
    add_experiment_routes(api, service)

    @api.post("/analyze")
    def analyze_route():
        body = _body()
        key, analysis = service.analyze(body.get("model"), body.get("prompt"))
        return jsonify(analysis.to_dict() | {"analysis_id": key})

    @api.get("/models")
    def models_route():
        return jsonify({"models": service.catalog()})

    @api.get("/analysis/<key>/attention")
    def attention_route(key: str):
        """One head's pattern (?layer=&head=) or all heads of a layer (?layer=); past `OVERVIEW`
        tokens a head's overview (max-pooled) or a window (&rows=a:b&keys=c:d), see docs/api.md."""
        analysis = service.store.get(key)
        layer = _int_arg("layer", analysis.lm.layers)
        head = _int_arg("head", analysis.heads_per_layer) if "head" in request.args else None
        tokens = len(analysis.tokens)
        answer = {"layer": layer, "head": head, "tokens": [t.display for t in analysis.tokens]}
        if "rows" in request.args or "keys" in request.args:
            rows, keys = _span("rows", tokens), _span("keys", tokens)
            if head is None:
                pattern = analysis.layer_patterns(layer, rows)[:, :, keys]
            else:
                pattern = analysis.pattern(layer, head, rows)[:, keys]
            answer |= {"rows": [rows.start, rows.stop], "keys": [keys.start, keys.stop]}
        elif tokens <= OVERVIEW:
            pattern = (
                analysis.layer_patterns(layer) if head is None else analysis.pattern(layer, head)
            )
        elif head is None:
            raise RequestError(
                f"All heads of a layer at {tokens:,} tokens are too large to send: ask for one "
                f"head, or a window (rows=a:b&keys=c:d, each at most {OVERVIEW} long)."
            )
        else:
            pattern = analysis.pattern_overview(layer, head)
            answer["overview"] = {"factor": -(-tokens // pattern.shape[0]), "pool": "max"}
        if request.args.get("format") == "uint8":  # compact: one byte per cell, weight * 255
            cells = (pattern * 255).round().clamp(0, 255).to(torch.uint8)
            encoded = base64.b64encode(cells.numpy().tobytes()).decode("ascii")
            del answer["tokens"]  # the analysis document has them; this form is kept small
            return jsonify(answer | {"shape": list(cells.shape), "uint8": encoded})
        return jsonify(answer | {"pattern": pattern.round(decimals=5).tolist()})

    @api.get("/analysis/<key>/embeddings")
    def embeddings_route(key: str):
        """One token's embedding (?position=), its position vector, and its nearest tokens."""
        analysis = service.store.get(key)
        position = _int_arg("position", len(analysis.tokens))
        token = analysis.tokens[position]
        pos = analysis.position_embeddings
        pos_vector = None if pos is None else pos[position].round(decimals=5).tolist()
        return jsonify(
            {
                "position": position,
                "token": token.to_dict(),
                "vector": analysis.token_embeddings[position].round(decimals=5).tolist(),
                "position_vector": pos_vector,
                "positional_encoding": analysis.lm.card.positional_encoding,
                "nearest": [n.to_dict() for n in nearest_tokens(analysis.lm, token.id)],
            }
        )

    @api.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown_route(rest: str):
        """No such route: a JSON 404 (or 405 for a known route and another method), not the page."""
        adapter = current_app.url_map.bind_to_environ(request.environ)
        for method in ("GET", "POST"):
            try:
                endpoint, _ = adapter.match(request.path, method=method)
            except (NotFound, MethodNotAllowed):
                continue
            if endpoint != "api.unknown_route":
                return jsonify(
                    {"error": f"{request.path} answers {method}, not {request.method}."}
                ), 405
        return jsonify({"error": f"No API route {request.path} (see docs/api.md)."}), 404

    return api


def install(
    app: Flask,
    service: Service,
    allowed_hosts: Iterable[str] | None = None,
    script_sources: Callable[[], Iterable[str]] | Iterable[str] = (),
) -> None:
    """Mount the API, its JSON error handling and the security guards on a Flask app.

    `allowed_hosts`: the Host values answered (default: loopback names on any port);
    `script_sources`: extra CSP script sources (the dashboard's inline-script hashes).
    """
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    security.install(app, allowed_hosts, script_sources)
    app.register_blueprint(create_blueprint(service))

    @app.errorhandler(LmscopeError)
    def lmscope_error(error: LmscopeError):
        return jsonify({"error": str(error)}), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith("/api/"):
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
        if not request.path.startswith("/api/"):
            raise error
        app.logger.exception("unexpected error in %s", request.path)
        return jsonify(
            {"error": f"Internal error ({type(error).__name__}); the server keeps running."}
        ), 500


def create_app(service: Service | None = None, allowed_hosts: Iterable[str] | None = None) -> Flask:
    """A bare API server (the dashboard mounts the same blueprint on its own server).

    `allowed_hosts` defaults to the loopback names on any port (`security.allowed_hosts` gives
    the set for one bound address)."""
    app = Flask("lmscope.api")
    install(app, service or Service(), allowed_hosts)
    return app
