"""The one service under every front-end (the CLI, the JSON API and the dashboard): loaded models,
stored analyses and each client's running jobs."""

from .jobs import ClientJobs
from .service import Service
from .store import AnalysisStore

__all__ = ["AnalysisStore", "ClientJobs", "Service"]
