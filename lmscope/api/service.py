"""What the API and the dashboard both do with a request: the same library calls, one place."""

from __future__ import annotations

from ..core.analysis import Analysis, analyze
from ..core.availability import on_disk
from ..core.catalog import CATALOG
from ..core.errors import RequestError
from ..core.loading import Progress, no_progress
from ..core.model import LoadedModel
from ..core.model_cache import ModelCache, default_cache
from .store import AnalysisStore


class Service:
    """Models (shared, read-only) and analyses (one per request) behind the HTTP API and the UI."""

    def __init__(self, models: ModelCache | None = None, store: AnalysisStore | None = None):
        self.models = models or default_cache()
        self.store = store or AnalysisStore()

    def analyze(
        self, model_id: object, prompt: object, progress: Progress = no_progress
    ) -> tuple[str, Analysis]:
        """Analyze and keep the analysis; returns its id and the analysis."""
        if not isinstance(model_id, str) or not model_id.strip():
            raise RequestError("Choose a model: 'model' must be a model id such as gpt2.")
        lm = self.models.get(model_id.strip(), progress)
        analysis = analyze(lm, prompt)  # validates the prompt
        return self.store.put(analysis), analysis

    def model(self, model_id: object, progress: Progress = no_progress) -> LoadedModel:
        """The loaded model a request names (loaded once, shared read-only)."""
        if not isinstance(model_id, str) or not model_id.strip():
            raise RequestError("Choose a model: 'model' must be a model id such as gpt2.")
        return self.models.get(model_id.strip(), progress)

    def has_on_disk(self, model_id: str) -> bool:
        """Whether a request for `model_id` downloads nothing: it is loaded, or on this machine."""
        return ModelCache.key(model_id) in self.models.cached() or on_disk(model_id)

    def catalog(self) -> list[dict]:
        cached = set(self.models.cached())
        return [
            {"id": e.id, "name": e.name, "description": e.description, "loaded": e.id in cached}
            for e in CATALOG
        ]
