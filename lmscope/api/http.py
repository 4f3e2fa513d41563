"""The JSON HTTP API, a Flask blueprint mounted on the dashboard's server.

POST /api/analyze {"model": "gpt2", "prompt": "..."} answers the same document as
`lmscope analyze --json`, plus `analysis_id`; heavy arrays are fetched per head or per layer.
Errors answer a 4xx status with {"error": "..."}; the server stays up.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from ..core.embeddings import nearest_tokens
from ..core.errors import LmscopeError, RequestError
from .service import Service

MAX_BODY_BYTES = 1_000_000


def _body() -> dict:
    data = request.get_json(silent=True)
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
        """One head's pattern (?layer=&head=) or all heads of a layer (?layer=)."""
        analysis = service.store.get(key)
        layer = _int_arg("layer", analysis.attention.shape[0])
        if "head" in request.args:
            head = _int_arg("head", analysis.attention.shape[1])
            pattern = analysis.attention[layer, head]
        else:
            pattern = analysis.attention[layer]
        return jsonify(
            {
                "layer": layer,
                "head": int(request.args["head"]) if "head" in request.args else None,
                "tokens": [t.display for t in analysis.tokens],
                "pattern": pattern.round(decimals=5).tolist(),
            }
        )

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

    return api


def install(app: Flask, service: Service) -> None:
    """Mount the API and its JSON error handling on a Flask app."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
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
        """A bug must not take the server down: log it, answer 500, keep serving."""
        if not request.path.startswith("/api/"):
            raise error
        app.logger.exception("unexpected error in %s", request.path)
        return jsonify(
            {"error": f"Internal error ({type(error).__name__}); the server keeps running."}
        ), 500


def create_app(service: Service | None = None) -> Flask:
    """A bare API server (the dashboard mounts the same blueprint on its own server)."""
    app = Flask("lmscope.api")
    install(app, service or Service())
    return app
