"""The Runs section: one experiment over a dataset of prompts, on the loaded model, through the
service's runs (`service.runs`): `start` (upload, settings, progress, Cancel) and `results` (the
index, a run's heatmaps and per-prompt values, a prompt opened in the analysis). Figures are built
on the server (`figures`); the browser gets only what it draws."""

from __future__ import annotations

from dash import Dash, html

from ...service import Service
from ..stages import section
from . import results, start

NUMBER = 7
EXPLAIN = (
    "The experiments above answer for one prompt; a claim about a model is about many. A run "
    "measures one experiment on every row of a dataset you upload (the head profile, the lens, "
    "direct logit attribution, the ablation scan, patching, steering) and keeps every "
    "per-prompt value, so a cell's mean comes with its 95% interval and its spread over the "
    "prompts. Runs are stored on this machine (lmscope runs lists them); starting the same run "
    "again resumes it."
)


def layout() -> html.Section:
    return section(
        NUMBER,
        "Runs: one experiment over a dataset of prompts",
        EXPLAIN,
        *start.layout(),
        *results.layout(),
        badge="Runs",
    )


def register(app: Dash, service: Service) -> None:
    start.register(app, service)
    results.register(app, service)
