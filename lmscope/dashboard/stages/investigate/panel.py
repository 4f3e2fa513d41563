"""What the Investigation panel's parts share: form controls, the target fields (a token, and
optionally a second one for logit(A) - logit(B)), the metric line, and `Panel`,
which finds the analyzed prompt and keeps each tab's results to the analysis it shows."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import NamedTuple

from dash import Dash, Input, Output, Patch, State, ctx, dcc, html, no_update

from ....core import budget
from ....core.errors import LmscopeError, RequestError
from ....core.model import LoadedModel
from ....service import Service
from ...progress import refusal
from .. import HIDDEN, SHOWN
from .reproduce import Code, code_view

NO_ANALYSIS = "Press Analyze first: the experiments work on the analyzed prompt."
JOB_LABELS = {"run_scan": "Ablation scan", "run_scan_atp": "Ablation scan (AtP)",
              "run_attribution": "Token attribution",
              "run_compare": "Comparison", "run_dla": "Logit attribution"}  # fmt: skip
TABS_KEPT = 1000  # open tabs whose current analysis the server remembers


_TRIGGER: ContextVar[object] = ContextVar("lmscope_panel_trigger", default=None)


class Setting(NamedTuple):
    """One control a shared link carries (dashboard/share.py): its URL key, the control's id,
    how the URL's text is read (`int`, `float`, `str`, the values a choice may take, or "heads":
    `0.1,3.5`), the control's default (left out of the URL) and the property that holds it;
    `follows`: the `focus` key the control copies until the user types (left out while equal)."""

    key: str
    control: str
    kind: object
    default: object
    prop: str = "value"
    follows: str | None = None


def message(error: str | LmscopeError) -> html.Div:
    """An error as the panel shows it; long work is offered to run anyway by the button that
    started it (`progress.refusal`)."""
    return refusal(error, _TRIGGER.get())


def parse_target(text: str | None) -> int | str | None:
    """The target field: empty = the top prediction, digits = a token id, else the token's text
    (␣ may stand for a space)."""
    if not text or not text.strip():
        return None
    if text.strip().isdigit():
        return int(text.strip())
    return text.replace("␣", " ")


def metric_line(metric: dict, notices: list[str], element_id: str) -> html.Div:
    """Which metric a result shows (`metric.to_dict()`), and the notices about its tokens (a
    target typed without its leading space), as text."""
    items = [html.Div(n, className="notice target-notice") for n in notices]
    items.append(html.P(["Metric: ", html.Strong(metric["label"], className="mono")],
                        className="hint metric-label"))  # fmt: skip
    return html.Div(items, id=element_id)


def agreement_line(agreement: dict | None, element_id: str) -> list:
    """AtP against the exact scan (`atp.agreement`): Spearman and top-k overlap, as one line."""
    if agreement is None:
        return []
    rho, k = agreement["spearman"], agreement["top_k"]
    return [html.P(f"AtP against exact: Spearman {'n/a' if rho is None else f'{rho:.3f}'}, "
                   f"top-{k} overlap {agreement['top_k_overlap']}/{k}.", id=element_id)]  # fmt: skip


def checked_table(
    rows: list[tuple[str, float, float]], caption: str, element_id: str, what: str = "cell"
) -> list:
    """AtP's strongest cells beside their exact values, (name, AtP, exact) per row, as a table."""
    if not rows:
        return []
    header = html.Tr([html.Th(what), html.Th("AtP"), html.Th("exact")])
    cells = [html.Tr([html.Td(name, className="mono"), html.Td(f"{atp:.3f}"),
                      html.Td(f"{exact:.3f}")]) for name, atp, exact in rows]  # fmt: skip
    return [html.P(caption, className="hint"),
            html.Table([header, *cells], id=element_id, className="table")]  # fmt: skip


def button(label: str, button_id: str, primary: bool = False) -> html.Button:
    return html.Button(
        label, id=button_id, className=f"button {'primary' if primary else 'secondary'}"
    )


def number(input_id: str, value: float, label: str, **props) -> html.Label:
    return html.Label(
        [f"{label} ", dcc.Input(id=input_id, type="number", value=value, className="model-custom",
                                style={"minWidth": "5rem", "width": "6rem"}, **props)],
        className="field-label",
    )  # fmt: skip


def keep(name: str, result: dict) -> Patch:
    """Add one experiment's result (small JSON) to the panel's downloadable results."""
    patch = Patch()
    patch[name] = result
    return patch


@dataclass
class Outcome:
    """What an experiment of the panel shows: its text (`body`), its figures by name (None hides
    one), the result kept in the downloadable results (`kept`: its name and document), and the
    Python call and command line that compute it again (`code`)."""

    body: object = no_update
    figures: dict[str, object] = field(default_factory=dict)
    kept: tuple[str, dict] | None = None
    also: dict[str, object] = field(default_factory=dict)  # "id.property": value (`also`)
    code: Code | None = None  # the result as code (shown under the body, `reproduce`)


class Panel:
    """The server side of the panel: the service, and per tab the analysis it now belongs to."""

    def __init__(self, service: Service) -> None:
        self.service = service  # its `jobs`: each tab's running jobs (progress, Cancel)
        self.shown: dict[str, str] = {}  # client id -> analysis id

    def model_and_prompt(self, data: dict | None) -> tuple[LoadedModel, str]:
        """The analyzed prompt's model and text (a `RequestError` before the first Analyze)."""
        if not data or not data.get("prompt"):
            raise RequestError(NO_ANALYSIS)
        return self.service.model(data["model"]), data["prompt"]

    def follow(self, client: str, data: dict | None) -> None:
        """Tab `client` now shows analysis `data`: older results for it are dropped."""
        if len(self.shown) > TABS_KEPT:
            self.shown.clear()
        self.shown[client] = (data or {}).get("id")

    def current_only(self, run: Callable[..., tuple]) -> Callable[..., tuple]:
        """Drop a result computed for an analysis the tab has since replaced (Analyze pressed
        again while it ran). The callback's last two arguments are the analysis and the client."""

        label = JOB_LABELS.get(run.__name__) or run.__name__.removeprefix("run_").capitalize()

        @functools.wraps(run)
        def checked(*args):
            *args, client = args
            trigger = ctx.triggered_id if isinstance(ctx.triggered_id, str) else None
            token = _TRIGGER.set(trigger)
            allowed = isinstance(client, str) and self.service.jobs.confirmed(client, trigger)
            try:
                with budget.confirmed() if allowed else contextlib.nullcontext():
                    if not isinstance(client, str):
                        result = run(*args)
                    else:  # the tab's job: progress line and Cancel (Cancelled: an LmscopeError)
                        with self.service.jobs.job(client, run.__name__, label):
                            result = run(*args)
            finally:
                _TRIGGER.reset(token)
            data = args[-1] or {}
            if self.shown.get(client, data.get("id")) != data.get("id"):
                return (no_update,) * len(result)
            return result

        return checked

    def experiment(
        self,
        app: Dash,
        *,
        buttons: tuple[str, ...],
        body: str,
        figures: tuple[str, ...] = (),
        reads: dict[str, State] | None = None,
        also: tuple[Output, ...] = (),
    ) -> Callable[[Callable[..., Outcome]], Callable[..., Outcome]]:
        """Register one experiment of the panel: a press of one of `buttons` runs the decorated
        `run(data, trigger, **reads)` on the analysis shown (`data`), as the tab's job
        (`current_only`), and shows its `Outcome` in `body` and the named `figures`. An
        `LmscopeError` becomes the panel's message (long work is offered to run anyway); `also`:
        more outputs the outcome may fill (`Outcome.also`)."""
        named = {
            "body": Output(body, "children"),
            "message": Output("inv-message", "children", allow_duplicate=True),
            "kept": Output("inv-results", "data", allow_duplicate=True),
        }
        for name in figures:
            named[f"{name}.figure"] = Output({"kind": "figure", "name": name}, "figure")
            named[f"{name}.style"] = Output({"kind": "figure", "name": name}, "style")
        for output in also:
            named[f"{output.component_id}.{output.component_property}"] = output
        keys = list(named)
        reads = reads or {}

        def register(run: Callable[..., Outcome]) -> Callable[..., Outcome]:
            @app.callback(
                *named.values(),
                *(Input(button, "n_clicks") for button in buttons),
                *reads.values(),
                State("analysis", "data"),
                State("client", "data"),
                running=[(Output(b, "disabled"), True, False) for b in buttons],
                prevent_initial_call=True,
            )
            @functools.wraps(run)
            def callback(*args):
                values = dict(zip(reads, args[len(buttons) : -2], strict=True))
                return self.current_only(shown)(values, *args[-2:])

            def shown(values: dict, data: dict | None) -> tuple:
                answer = dict.fromkeys(keys, no_update)
                try:
                    outcome = run(data, ctx.triggered_id, **values)
                except LmscopeError as error:
                    return tuple((answer | {"message": message(error)}).values())
                answer |= {"body": outcome.body, "message": ""}
                if outcome.code is not None:
                    parts = outcome.body if isinstance(outcome.body, list) else [outcome.body]
                    answer["body"] = [*parts, code_view(outcome.code, body)]
                for name, figure in outcome.figures.items():  # None: hidden (a stale one)
                    answer[f"{name}.style"] = HIDDEN if figure is None else SHOWN
                    answer[f"{name}.figure"] = no_update if figure is None else figure
                if outcome.kept is not None:
                    answer["kept"] = keep(*outcome.kept)
                answer |= outcome.also
                return tuple(answer.values())

            shown.__name__ = run.__name__
            return callback

        return register
