"""What a panel result is, as code: the `lmscope` Python call and the command line that compute
it again, and, where a run measures the same thing, the `lmscope run` line over a dataset and a
"Save as a run" button (a run of this one prompt, listed in the Runs section).

Every line is text (a `Pre`, copied by `dcc.Clipboard` as its text), with each value quoted for
the shell (`shlex.quote`) or for Python (`repr`); tests run the shown command line through
`lmscope.cli.main` and compare its numbers with the panel's.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from dash import MATCH, Dash, Input, Output, State, dcc, html, set_props

from ....core.errors import LmscopeError
from ....core.model import LoadedModel
from ....service import Service

SAVE = "save-run"  # pattern-matching id kinds of the save button, its spec and its message
SPEC = "save-run-spec"
SAVED = "save-run-message"
COLUMNS = ("prompt", "corrupt", "answer", "wrong")
SWITCHES = frozenset({"--json", "--tokens"})  # the CLI's options that take no value


@dataclass(frozen=True)
class Code:
    """A result as code: `imports` and `call` (Python, after `lm = lmscope.load(model)`), the
    command line's arguments after `lmscope`, and the run that measures it over a dataset
    (`experiment`, this prompt's `fields`, `settings`), if any."""

    model: str
    imports: str
    call: str
    command: list[object]
    experiment: str | None = None
    fields: dict[str, object] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def python(self) -> str:
        return (
            f"import lmscope\n{self.imports}\n\nlm = lmscope.load({self.model!r})\n"
            f"result = {self.call}"
        )

    @property
    def cli(self) -> str:
        return shell("lmscope", *self.command)

    @property
    def dataset(self) -> str | None:
        """The `lmscope run` line over a dataset file of rows like this prompt's."""
        if self.experiment is None:
            return None
        return shell(
            "lmscope", "run", "--model", self.model, "--data", "prompts.jsonl",
            "--experiment", self.experiment, "--out", f"runs/{self.experiment}",
            *setting_flags(self.settings),
        )  # fmt: skip

    @property
    def row(self) -> str:
        """This prompt as a line of the dataset (JSONL)."""
        kept = {k: v for k, v in self.fields.items() if v is not None and v != ""}
        return json.dumps(kept, ensure_ascii=False)


def shell(*words: object) -> str:
    """Words as one shell line that gives back exactly these words: a value after an option that
    starts with '-' is joined to it (`--prompt=-x`, else argparse takes it for an option), and a
    word holding a character that is not printable (a newline, an escape, a terminal control) is
    written with bash's $'...' escapes, so pasting the line never sends the terminal a control."""
    if any("\x00" in str(word) for word in words):
        return "# A NUL character cannot be passed on a command line: use the Python call."
    joined: list[str] = []
    for word in map(str, words):
        option = joined[-1] if joined else ""
        if word.startswith("-") and option.startswith("--") and "=" not in option:
            if option not in SWITCHES:
                joined[-1] = f"{option}={word}"
                continue
        joined.append(word)
    return " ".join(map(shell_word, joined))


def shell_word(word: str) -> str:
    """One word quoted for the shell: shlex's quotes, or $'...' where a character is not
    printable."""
    if word.isprintable():
        return shlex.quote(word)
    return "$'" + "".join(_ansi_c(c) for c in word) + "'"


def _ansi_c(char: str) -> str:
    if char in "\\'":
        return "\\" + char
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x80 else f"\\U{code:08x}"  # a character, not a byte


def flag(name: str, value: object) -> list[object]:
    """`--name value`, or nothing for a value left to its default (None)."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [f"--{name}", *value]
    return [f"--{name}", value]


def setting_flags(settings: dict[str, object]) -> list[object]:
    return [w for k, v in settings.items() for w in flag(k.replace("_", "-"), v)]


def call(function: str, *args: object, **kwargs: object) -> str:
    """`function(lm, 'a', key=1)`: each value as Python writes it."""
    parts = ["lm", *(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())]
    return f"{function}({', '.join(parts)})"


def token_text(lm: LoadedModel, target: object) -> object:
    """A target as the command line takes it (text): a token id becomes its text where that text
    is the id again, else stays an id (the command line would read its digits as text)."""
    if isinstance(target, int) and not isinstance(target, bool):
        text = lm.tokenizer.decode([target])
        if lm.tokenizer.encode(text, add_special_tokens=False) == [target]:
            return text
    return target


def steering_code(lm: LoadedModel, model: str, prompt: str, layer: object, coefficient: object,
             source: dict, position: object, new_tokens: int) -> Code:  # fmt: skip
    """Steering as code: `steer`, `lmscope steer`, and a steer run (the metric and KL per row)."""
    prompts, token = source.get("prompts"), token_text(lm, source.get("token"))
    settings = {"layer": layer, "coefficient": coefficient, "from_prompts": prompts,
                "token": token, "position": position}  # fmt: skip
    return Code(
        model,
        "from lmscope.experiments.steering import steer",
        call("steer", prompt, layer, coefficient, prompts=prompts, token=token, position=position,
             new_tokens=new_tokens),
        ["steer", "--model", model, "--prompt", prompt, *setting_flags(settings),
         "--new-tokens", new_tokens],
        "steer",
        {"prompt": prompt},
        {k: v for k, v in settings.items() if v is not None},
    )  # fmt: skip


def generation_code(model: str, prompt: str, settings, seed: int | None) -> Code:
    """Generation as code (`generate`, `lmscope generate`), its sampling seed pinned."""
    s = settings
    options = {"max_new_tokens": s.max_new_tokens}
    command: list[object] = ["--max-new-tokens", s.max_new_tokens]
    if s.method == "beam":
        options["beams"] = s.beams
        command += ["--beams", s.beams]
    elif s.method == "sample":
        options |= {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
                    "seed": seed}  # fmt: skip
        command += ["--temperature", s.temperature, "--top-k", s.top_k, "--top-p", s.top_p,
                    "--seed", seed]  # fmt: skip
    made = ", ".join([repr(s.method), *(f"{k}={v!r}" for k, v in options.items())])
    return Code(
        model,
        "from lmscope.experiments.generation import GenerationSettings, generate",
        f"generate(lm, {prompt!r}, GenerationSettings({made}))",
        ["generate", "--model", model, "--prompt", prompt, *command],
    )


def code_view(code: Code, key: str) -> html.Details:
    """The code of a result, each block copyable as text, and the "Save as a run" button."""
    blocks = [("Python", code.python, "python"), ("Command line", code.cli, "cli")]
    if code.dataset is not None:
        blocks.append(("Over a dataset (lmscope run)", code.dataset, "dataset"))
    items: list = []
    for label, text, part in blocks:
        element = f"{key}-code-{part}"
        items += [
            html.Div(
                [html.Span(label, className="field-label"),
                 dcc.Clipboard(target_id=element, title=f"Copy the {label.lower()}",
                               className="copy")],
                className="row code-head",
            ),
            html.Pre(text, id=element, className="code"),
        ]  # fmt: skip
    if code.experiment is not None:
        items += [
            html.P(["prompts.jsonl holds one JSON object per line; this prompt's line: ",
                    html.Code(code.row, className="mono")], className="hint"),
            html.Div(
                [html.Button("Save as a run of this prompt", id={"kind": SAVE, "panel": key},
                             className="button secondary"),
                 dcc.Store(id={"kind": SPEC, "panel": key}, data={
                     "model": code.model, "experiment": code.experiment, "fields": code.fields,
                     "settings": code.settings}),
                 html.Span(id={"kind": SAVED, "panel": key})],
                className="row",
            ),
        ]  # fmt: skip
    return html.Details(
        [html.Summary("Reproduce: the Python call and the command line"), *items],
        className="reproduce",
        id=f"{key}-code",
    )


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output({"kind": SAVED, "panel": MATCH}, "children"),
        Input({"kind": SAVE, "panel": MATCH}, "n_clicks"),
        State({"kind": SPEC, "panel": MATCH}, "data"),
        prevent_initial_call=True,
    )
    def save(_clicks, spec):
        """Save the result as a run of its one prompt; the Runs section watches it."""
        if not isinstance(spec, dict) or not isinstance(spec.get("fields"), dict):
            return ""
        try:
            status = service.runs.save_prompt(
                spec.get("model"), spec["fields"], spec.get("experiment"), spec.get("settings")
            )
        except LmscopeError as error:
            return html.Span(str(error), className="message error")
        set_props("runs-watched", {"data": status["id"]})
        return html.Span(f"Saved as run {status['id']} (see the Runs section).",
                         className="hint", **{"data-run": status["id"]})  # fmt: skip
