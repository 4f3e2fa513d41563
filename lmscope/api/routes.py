"""The JSON HTTP API's routes: a Flask blueprint over one `Service` (the web server mounts it,
see `lmscope.web.server`).

POST /api/analyze {"model": "gpt2", "prompt": "..."} answers the same document as
`lmscope analyze --json`, plus `analysis_id`; heavy arrays are fetched per head or per layer.
Errors answer a 4xx status with {"error": "..."}; the server stays up. Host, Origin and response
headers are guarded by `security` (docs/security.md).
"""

from __future__ import annotations

import base64

import torch
from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..core.analysis import OVERVIEW
from ..core.embeddings import nearest_tokens
from ..core.errors import RequestError
from ..core.flow import flow
from ..service import Service
from .experiment_routes import add_experiment_routes
from .requests import int_arg, json_body, span
from .run_routes import add_run_routes


def create_blueprint(service: Service) -> Blueprint:
    """The API's routes over one `Service`."""
    api = Blueprint("api", __name__, url_prefix="/api")
    add_experiment_routes(api, service)
    add_run_routes(api, service)

    @api.post("/analyze")
    def analyze_route():
        body = json_body()
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
        layer = int_arg("layer", analysis.lm.layers)
        head = int_arg("head", analysis.heads_per_layer) if "head" in request.args else None
        tokens = len(analysis.tokens)
        answer = {"layer": layer, "head": head, "tokens": [t.display for t in analysis.tokens]}
        if "rows" in request.args or "keys" in request.args:
            rows, keys = span("rows", tokens), span("keys", tokens)
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
            encoded = base64.b64encode(cells.cpu().numpy().tobytes()).decode("ascii")
            del answer["tokens"]  # the analysis document has them; this form is kept small
            return jsonify(answer | {"shape": list(cells.shape), "uint8": encoded})
        return jsonify(answer | {"pattern": pattern.round(decimals=5).tolist()})

    @api.get("/analysis/<key>/embeddings")
    def embeddings_route(key: str):
        """One token's embedding (?position=), its position vector, and its nearest tokens."""
        analysis = service.store.get(key)
        position = int_arg("position", len(analysis.tokens))
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

    @api.get("/analysis/<key>/flow")
    def flow_route(key: str):
        """The pass on one screen at one token (?position=, default the last): `core.flow`."""
        analysis = service.store.get(key)
        count = len(analysis.tokens)
        position = int_arg("position", count) if "position" in request.args else count - 1
        return jsonify(flow(analysis, position).to_dict())

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
