"""The dashboard's server side without a browser: nearest tokens, figures, the embeddings route, and
`lmscope serve`. Expected values come from the model run directly through transformers."""

from __future__ import annotations

import json

import pytest
import torch

from lmscope import cli
from lmscope.core import attention
from lmscope.core.analysis import analyze
from lmscope.core.embeddings import nearest_tokens
from lmscope.core.errors import RequestError
from lmscope.core.flow import flow
from lmscope.core.model_cache import ModelCache
from lmscope.dashboard import figures
from lmscope.service import Service
from lmscope.web import server
from lmscope.web.server import api_app

PROMPT = "The cat sat on the mat. The cat sat on the"


def reference(model, tokenizer, prompt: str = PROMPT):
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.no_grad(), attention.eager(model):
        return model(ids, output_attentions=True, output_hidden_states=True)


def cosine_top(table: torch.Tensor, token_id: int, k: int) -> list[int]:
    unit = table / table.norm(dim=-1, keepdim=True)
    similarity = unit @ unit[token_id]
    similarity[token_id] = -2
    return similarity.argsort(descending=True)[:k].tolist()


def test_nearest_tokens_are_the_highest_cosine_similarity(tiny_gpt2, tiny_gpt2_model):
    token_id = tiny_gpt2.tokenizer(" cat")["input_ids"][0]
    table = tiny_gpt2_model.transformer.wte.weight.detach()
    found = nearest_tokens(tiny_gpt2, token_id, k=5)
    assert [n.id for n in found] == cosine_top(table, token_id, 5)
    assert token_id not in [n.id for n in found]
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)


def test_nearest_tokens_in_bfloat16_are_read_in_float32_blocks(tiny_gpt2_folder, monkeypatch):
    """A half-precision table is read a block of rows at a time in float32 (never copied whole:
    Gemma's would be 671 MB per request), and the neighbours are the cosine top of that very
    table, in float64."""
    import lmscope
    from lmscope.core import embeddings

    monkeypatch.setattr(embeddings, "ROWS", 4096)  # 13 blocks of the 50,257 rows
    lm = lmscope.load(str(tiny_gpt2_folder), device="cpu", dtype="bfloat16")
    widest = []
    real = torch.Tensor.float

    def float32(tensor):
        widest.append(tensor.shape[0] if tensor.dim() == 2 else 0)
        return real(tensor)

    monkeypatch.setattr(torch.Tensor, "float", float32)
    token_id = lm.tokenizer(" cat")["input_ids"][0]
    found = nearest_tokens(lm, token_id, k=5)
    monkeypatch.setattr(torch.Tensor, "float", real)
    table = lm.model.transformer.wte.weight.detach()
    assert table.dtype == torch.bfloat16 and max(widest) <= 4096
    assert [n.id for n in found] == cosine_top(table.double(), token_id, 5)


@pytest.mark.parametrize("token_id", [-1, 50257, 10**9])
def test_nearest_tokens_refuse_ids_outside_the_vocabulary(tiny_gpt2, token_id):
    with pytest.raises(RequestError):
        nearest_tokens(tiny_gpt2, token_id)


def test_top10_chart_puts_the_most_likely_token_first(tiny_gpt2, tiny_gpt2_model):
    out = reference(tiny_gpt2_model, tiny_gpt2.tokenizer)
    probs = out.logits[0, -1].softmax(-1)
    bars = figures.top_predictions(analyze(tiny_gpt2, PROMPT)).data[0]
    assert list(bars.customdata) == probs.topk(10).indices.tolist()
    assert bars.x[0] == pytest.approx(float(probs.max()), abs=1e-6)


def test_logit_lens_ends_with_the_models_own_prediction(tiny_gpt2, tiny_gpt2_model):
    out = reference(tiny_gpt2_model, tiny_gpt2.tokenizer)
    lens = figures.logit_lens(analyze(tiny_gpt2, PROMPT)).data[0]
    assert len(lens.y) == tiny_gpt2_model.config.n_layer + 1
    best = tiny_gpt2.tokenizer.decode([int(out.logits[0, -1].argmax())])
    assert lens.text[-1][0] == best.replace(" ", "␣")


def test_residual_heatmaps_cover_every_layer_and_position(tiny_gpt2, tiny_gpt2_model):
    out = reference(tiny_gpt2_model, tiny_gpt2.tokenizer)
    fig = figures.residual_writes(analyze(tiny_gpt2, PROMPT))
    layers, tokens = tiny_gpt2_model.config.n_layer, out.logits.shape[1]
    for trace in fig.data:
        assert len(trace.z) == layers and all(len(row) == tokens for row in trace.z)
    # what attention and MLP wrote in layer 0 adds up to the change of the residual stream
    change = (out.hidden_states[1] - out.hidden_states[0])[0].norm(dim=-1)
    attn, mlp = (torch.tensor(t.z[0]) for t in fig.data)
    assert torch.all(change <= attn + mlp + 0.02)


def test_embeddings_route_answers_the_tokens_vector_and_neighbours(tiny_gpt2, tiny_gpt2_model):
    models = ModelCache()
    models.add(tiny_gpt2)
    client = api_app(Service(models)).test_client()
    key = client.post("/api/analyze", json={"model": "tiny-gpt2", "prompt": PROMPT}).json[
        "analysis_id"
    ]
    answer = client.get(f"/api/analysis/{key}/embeddings?position=1")
    assert answer.status_code == 200
    body = answer.json
    token_id = tiny_gpt2.tokenizer(PROMPT)["input_ids"][1]
    table = tiny_gpt2_model.transformer.wte.weight.detach()
    assert body["token"]["id"] == token_id
    assert torch.allclose(torch.tensor(body["vector"]), table[token_id], atol=1e-4)
    position = tiny_gpt2_model.transformer.wpe.weight[1].detach()
    assert torch.allclose(torch.tensor(body["position_vector"]), position, atol=1e-4)
    assert [n["id"] for n in body["nearest"]] == cosine_top(table, token_id, 10)
    bad = client.get(f"/api/analysis/{key}/embeddings?position=999")
    assert bad.status_code == 400 and "position" in bad.json["error"]


def test_flow_route_answers_the_flow_document(tiny_gpt2):
    models = ModelCache()
    models.add(tiny_gpt2)
    service = Service(models)
    client = api_app(service).test_client()
    key = client.post("/api/analyze", json={"model": "tiny-gpt2", "prompt": PROMPT}).json[
        "analysis_id"
    ]
    analysis = service.store.get(key)
    for query, position in (("", len(analysis.tokens) - 1), ("?position=3", 3)):
        answer = client.get(f"/api/analysis/{key}/flow{query}")
        assert answer.status_code == 200
        assert answer.json == json.loads(json.dumps(flow(analysis, position).to_dict()))
    bad = client.get(f"/api/analysis/{key}/flow?position=99")
    assert bad.status_code == 400 and "position" in bad.json["error"]


def test_serve_binds_localhost_by_default():
    args = cli.parser().parse_args(["serve"])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 8050, None)


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_serve_warns_when_exposed_to_the_network(monkeypatch, capsys, host, warned):
    ran = {}

    class FakeServer:
        def run(self):
            ran["ran"] = True

        def close(self):
            ran["closed"] = True

    def fake_make_server(app, host, port):
        ran.update(host=host, port=port)
        return FakeServer()

    monkeypatch.setattr(server, "make_server", fake_make_server)
    assert cli.main(["serve", "--host", host, "--port", "8123"]) == 0
    assert ran == {"host": host, "port": 8123, "ran": True, "closed": True}
    assert ("warning" in capsys.readouterr().err) is warned


def test_the_api_serves_the_operators_model_by_default_and_lists_its_id(tiny_gpt2_folder):
    service = Service(ModelCache(budget=2**30))
    service.serve(str(tiny_gpt2_folder))
    client = api_app(service).test_client()
    listed = client.get("/api/models").json["models"]
    served = [entry for entry in listed if entry["served"]]
    assert [entry["id"] for entry in served] == [f"local:{tiny_gpt2_folder.name}"]
    assert str(tiny_gpt2_folder) not in json.dumps(listed)  # its name, never its path
    unnamed = client.post("/api/analyze", json={"prompt": "The cat sat"})
    assert unnamed.status_code == 200, unnamed.json
    assert unnamed.json["model"]["model_id"] == served[0]["id"]
    named = client.post("/api/analyze", json={"model": served[0]["id"], "prompt": "The cat sat"})
    assert named.json["predictions"] == unnamed.json["predictions"]


def test_models_not_on_this_machine_say_what_picking_them_would_do():
    """Offline (as the tests run), GPT-2 Medium (never cached by a test) is listed but marked
    and cannot be picked; the demo and the installed packages can."""
    from lmscope.dashboard.layout import model_options

    medium = "openai-community/gpt2-medium"
    service = Service(ModelCache(budget=2**30))
    catalog = {entry["id"]: entry for entry in service.catalog()}
    assert not catalog[medium]["on_disk"] and "cannot be reached" in catalog[medium]["picking"]
    assert catalog["demo"]["on_disk"] and catalog["demo"]["picking"] == ""
    options = {option["value"]: option for option in model_options(service.catalog())}
    assert options[medium]["disabled"] is True
    assert "not on this machine" in options[medium]["label"]
    assert not options["demo"].get("disabled")


def test_the_terms_of_a_catalog_model_are_served_from_its_package():
    from lmscope.core.catalog import CATALOG, terms_path

    client = api_app(Service(ModelCache(budget=2**30))).test_client()
    with_terms = [entry for entry in CATALOG if entry.terms]
    assert with_terms  # Gemma 3 270M
    for entry in with_terms:
        answer = client.get(f"/terms/{entry.id}")
        assert answer.status_code == 200 and answer.mimetype == "text/html"
        assert answer.data == terms_path(entry).read_bytes()
        assert answer.headers["Content-Security-Policy"]
    assert client.get("/terms/openai-community/gpt2").status_code == 404
