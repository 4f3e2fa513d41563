"""What every front-end does with a request: the same library calls, in one place."""

from __future__ import annotations

from ..core.analysis import Analysis, analyze
from ..core.availability import on_disk
from ..core.card import ModelCard
from ..core.catalog import CATALOG, DEFAULT_MODEL_ID, DEMO_ID, SMOLLM2_ID, installed, terms_path
from ..core.errors import LmscopeError, RequestError
from ..core.loading import (
    Progress,
    hub_reachable,
    inspect_model,
    load_model,
    memory_needed,
    no_progress,
)
from ..core.model import LoadedModel
from ..core.model_cache import ModelCache, default_cache
from .jobs import ClientJobs
from .runs import Runs
from .store import AnalysisStore

NO_MODEL = "Choose a model: 'model' must be a model id such as gpt2."


class Service:
    """Models (shared, read-only), analyses (one per request), each client's running jobs and
    the server's runs of an experiment over a dataset (`runs`), behind the CLI, the HTTP API and
    the dashboard.

    `served`: the model this server was started on (the operator's `--model`, or the start
    model); a request that names no model uses it.
    """

    def __init__(
        self,
        models: ModelCache | None = None,
        store: AnalysisStore | None = None,
        runs: Runs | None = None,
    ):
        self.models = models or default_cache()
        self.store = store or AnalysisStore()
        self.jobs = ClientJobs()
        self.runs = runs or Runs(self.model)
        self.served: str | None = None
        self.notice: str | None = None  # why the served model is not the one asked for

    def model_id(self, model_id: object) -> str:
        """The model a request names, or the served one when it names none."""
        if model_id is None and self.served is not None:
            return self.served
        if not isinstance(model_id, str) or not model_id.strip():
            raise RequestError(NO_MODEL)
        return model_id.strip()

    def model(self, model_id: object, progress: Progress = no_progress) -> LoadedModel:
        """The loaded model a request names (loaded once, shared read-only)."""
        return self.models.get(self.model_id(model_id), progress)

    def analyze(
        self, model_id: object, prompt: object, progress: Progress = no_progress
    ) -> tuple[str, Analysis]:
        """Analyze and keep the analysis; returns its id and the analysis."""
        analysis = analyze(self.model(model_id, progress), prompt)  # validates the prompt
        return self.store.put(analysis), analysis

    def stored(self, data: dict | None) -> Analysis | None:
        """The analysis a page shows (`data`: its `{"id": ...}`), or None before the first one or
        once the store has evicted it."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return None
        try:
            return self.store.get(data["id"])
        except LmscopeError:
            return None

    def inspect(self, model_id: str) -> tuple[ModelCard, int, int]:
        """A model read from its config alone, nothing downloaded or loaded: its card, the bytes
        its weights would download, and the memory loading it would need (in the dtype this
        server loads models in)."""
        config, _, card = inspect_model(model_id)
        half = str(getattr(config, "dtype", "")).endswith(("float16", "bfloat16"))
        return (
            card,
            card.parameters * (2 if half else 4),
            memory_needed(card, self.models.placement.dtype),
        )

    def has_on_disk(self, model_id: str) -> bool:
        """Whether a request for `model_id` downloads nothing: it is loaded, or on this machine."""
        return ModelCache.key(model_id) in self.models.cached() or on_disk(model_id)

    def serve(self, requested: str | None = None, progress: Progress = no_progress) -> str | None:
        """Load the model to serve and make it the default; returns (and keeps as `notice`) why
        it is not the one asked for, if it is not. An operator's `requested` model (a folder or
        a file too) must load; without one, GPT-2 Small falls back (e.g. offline with no cached
        copy) to the installed SmolLM2, else to the bundled demo, saying so."""
        self.notice = self._serve(requested, progress)
        return self.notice

    def _serve(self, requested: str | None, progress: Progress) -> str | None:
        if requested:  # the operator's: a folder or a file may be named
            key = ModelCache.key(requested)
            if key in self.models.cached():
                self.served = key
            else:
                lm = load_model(requested, allow_local_path=True, progress=progress,
                                placement=self.models.placement)  # fmt: skip
                self.served = self.models.add(lm)
            return None
        try:
            self.served = self.models.get(DEFAULT_MODEL_ID, progress).model_id
            return None
        except LmscopeError as error:
            try:
                lm = self.models.get(SMOLLM2_ID, progress)
            except LmscopeError as missing:
                self.served = self.models.get(DEMO_ID, progress).model_id
                return (
                    "GPT-2 could not be loaded, so lmscope opened on the bundled demo model. "
                    f"{error} {missing}"
                )
            self.served = lm.model_id
            return (
                f"GPT-2 could not be loaded, so lmscope opened on {lm.card.name}, installed on "
                f"this machine. {error}"
            )

    def catalog(self) -> list[dict]:
        """The models a client may name: the catalog's (a model shipped in a package only where
        it is installed), and the served model where it is not one of them (an operator's folder,
        as its `local:NAME` id). Each says whether it is on this machine and, if not, what
        picking it would do; and the terms its weights come under, where they are not open."""
        cached = set(self.models.cached())
        served = ModelCache.key(self.served) if self.served else None
        listed = []
        for entry in CATALOG:
            if entry.package and not installed(entry):
                continue
            here = entry.id in cached or on_disk(entry.id)
            listed.append(
                {
                    "id": entry.id,
                    "name": entry.name,
                    "description": entry.description,
                    "loaded": entry.id in cached,
                    "on_disk": here,
                    "served": entry.id == served,
                    "picking": "" if here else _not_here(),
                    "terms": entry.terms,
                    "terms_url": f"/terms/{entry.id}" if terms_path(entry) else None,
                }
            )
        if served and all(entry["id"] != served for entry in listed):
            lm = self.models.get(served)
            listed.insert(
                0,
                {
                    "id": served,
                    "name": lm.card.name,
                    "description": f"{lm.card.family}, {lm.card.layers} layers x "
                    f"{lm.card.heads_per_layer} heads: the model this server was started with",
                    "loaded": True,
                    "on_disk": True,
                    "served": True,
                    "picking": "",
                    "terms": "",
                    "terms_url": None,
                },
            )
        return listed


def _not_here() -> str:
    """What picking a hub model that is not on this machine does."""
    if hub_reachable():
        return "not on this machine: picking it downloads it from the Hugging Face hub"
    return "not on this machine, and the Hugging Face hub cannot be reached from here"
