"""The one service under every front-end (the CLI, the JSON API and the dashboard): loaded models,
stored analyses, each client's running jobs and the server's runs."""

from .jobs import ClientJobs
from .runs import Runs
from .service import Service
from .store import AnalysisStore

__all__ = ["AnalysisStore", "ClientJobs", "Runs", "Service"]
