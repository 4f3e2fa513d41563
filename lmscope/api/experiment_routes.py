"""HTTP routes of the experiments: thin wrappers over `lmscope.experiments`, JSON in and out.

POST /api/generate {"model", "prompt", "method": "greedy"|"sample"|"beam", "max_new_tokens",
"beams", "temperature", "top_k", "top_p", "seed"}
POST /api/ablate {"model", "prompt", "heads": [[layer, head], ...], "mode": "zero"|"mean",
"target", "wrong", "new_tokens"}
POST /api/ablation-scan {"model", "prompt", "mode", "target", "wrong", "method": "exact"|"atp"|
"both", "check"} (see docs/api.md)
POST /api/logit-attribution {"model", "prompt", "target", "wrong"}
POST /api/token-attribution {"model", "prompt", "target", "wrong", "steps"}
POST /api/compare {"models": [first, second], "prompt"}
POST /api/steer {"model", "prompt", "layer", "coefficient", "from_prompts": [A, B] | "token",
"position", "new_tokens"}
POST /api/patch {"model", "clean", "corrupt", "answer", "wrong", "component", "direction", "scan",
"check"} (see docs/api.md)
A setting left out takes the library function's default (`experiments.defaults`): the same
as the CLI's and the dashboard's. `target` is a token id, a single-token text, or left out for the top prediction; with `wrong`
(same forms) the metric is logit(target) - logit(wrong), else log p(target). Each answers its
`metric` (`label`, `answer`, `wrong`) and `notices` (a target typed without its leading space).
"""

from __future__ import annotations

from flask import Blueprint

from ..core.analysis import analyze
from ..core.errors import RequestError
from ..experiments.ablation import ablate
from ..experiments.ablation_atp import head_scan
from ..experiments.attribution import direct_logit_attribution, token_attribution
from ..experiments.comparison import compare
from ..experiments.defaults import default
from ..experiments.generation import GenerationSettings, generate
from ..experiments.patching import patch
from ..experiments.steering import steer
from ..service import Service
from .requests import answer, body_int, given, json_body


def add_experiment_routes(api: Blueprint, service: Service) -> None:
    """Register the experiment routes on the API blueprint."""

    @api.post("/generate")
    def generate_route():
        body = json_body()
        lm = service.model(body.get("model"))
        return answer(
            generate(lm, body.get("prompt"), GenerationSettings.from_request(body)).to_dict(), lm
        )

    @api.post("/ablate")
    def ablate_route():
        body = json_body()
        lm = service.model(body.get("model"))
        result = ablate(
            lm,
            body.get("prompt"),
            body.get("heads"),
            target=body.get("target"),
            wrong=body.get("wrong"),
            **given(body, "mode"),
            new_tokens=body_int(body, "new_tokens", default(ablate, "new_tokens")),
        )
        return answer(result.to_dict(), lm)

    @api.post("/ablation-scan")
    def scan_route():
        body = json_body()
        lm = service.model(body.get("model"))
        scan = head_scan(
            lm,
            body.get("prompt"),
            target=body.get("target"),
            wrong=body.get("wrong"),
            **given(body, "mode", "method"),
            check=body_int(body, "check", default(head_scan, "check")),
        )
        return answer(scan.to_dict(), lm)

    @api.post("/logit-attribution")
    def logit_attribution_route():
        body = json_body()
        analysis = analyze(service.model(body.get("model")), body.get("prompt"))
        result = direct_logit_attribution(analysis, body.get("target"), body.get("wrong"))
        lm = analysis.lm
        return answer(result.to_dict(), lm)

    @api.post("/token-attribution")
    def token_attribution_route():
        body = json_body()
        lm = service.model(body.get("model"))
        steps = body_int(body, "steps", default(token_attribution, "steps"))
        result = token_attribution(
            lm, body.get("prompt"), body.get("target"), wrong=body.get("wrong"), steps=steps
        )
        return answer(result.to_dict(), lm)

    @api.post("/steer")
    def steer_route():
        body = json_body()
        lm = service.model(body.get("model"))
        result = steer(
            lm,
            body.get("prompt"),
            body.get("layer", default(steer, "layer")),
            body.get("coefficient", default(steer, "coefficient")),
            prompts=body.get("from_prompts"),
            token=body.get("token"),
            position=body.get("position"),
            new_tokens=body_int(body, "new_tokens", default(steer, "new_tokens")),
        )
        return answer(result.to_dict(), lm)

    @api.post("/compare")
    def compare_route():
        body = json_body()
        models = body.get("models")
        if not isinstance(models, list) or len(models) != 2:
            raise RequestError(
                '\'models\' must be a list of two model ids, e.g. ["gpt2", "gpt2-medium"].'
            )
        first, second = (service.model(m) for m in models)
        return answer(compare(first, second, body.get("prompt")).to_dict(), first, second)

    @api.post("/patch")
    def patch_route():
        body = json_body()
        lm = service.model(body.get("model"))
        result = patch(
            lm,
            body.get("clean"),
            body.get("corrupt"),
            body.get("answer"),
            body.get("wrong"),
            **given(body, "component", "direction", "scan"),
            check=body_int(body, "check", default(patch, "check")),
        )
        return answer(result.to_dict(), lm)
