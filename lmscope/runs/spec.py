"""What a run is: one model, one dataset, one experiment and its settings, where it is stored and
how it is computed. Everything here is plain data (`to_dict` / `from_dict`), so a service, a
Ray worker or a later session can rebuild it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.devices import Placement, placement
from ..core.errors import LmscopeError, RequestError
from ..experiments.ablation import MODES
from ..experiments.ablation_atp import METHODS, head_scan
from ..experiments.atp import COMPONENTS
from ..experiments.defaults import default
from ..experiments.patching import DIRECTIONS, SCANS, patch
from ..experiments.steering import DEPTH, steer

ENGINES = ("local", "ray")
BATCH_SIZE = 32  # rows handed to the per-batch function at once (and stored as one part)


@dataclass(frozen=True)
class Setting:
    """One setting of an experiment: its default (None: required, or off), what it accepts, help."""

    name: str
    default: object
    help: str
    kind: type = str
    choices: tuple[str, ...] | None = None
    required: bool = False
    count: int = 1  # values it takes (2 for --from-prompts A B)


_CHECK = Setting(
    "check", default(patch, "check"), "strongest cells of the estimate measured exactly", int
)
SETTINGS: dict[str, tuple[Setting, ...]] = {
    "profile": (),
    "lens": (),
    "dla": (),
    "ablation-scan": (
        Setting(
            "mode",
            default(head_scan, "mode"),
            "what replaces a removed head's output",
            choices=MODES,
        ),
        Setting(
            "method",
            default(head_scan, "method"),
            "atp: one gradient estimates every head; exact: each removed; both",
            choices=METHODS,
        ),
        _CHECK,
    ),
    "patch": (
        Setting("component", default(patch, "component"), "what is patched", choices=COMPONENTS),
        Setting(
            "direction",
            default(patch, "direction"),
            "clean into corrupted (denoising) or back",
            choices=DIRECTIONS,
        ),
        Setting(
            "scan",
            default(patch, "scan"),
            "atp: the estimate; exact: every cell; both",
            choices=SCANS,
        ),
        _CHECK,
    ),
    "steer": (
        Setting(
            "layer",
            default(steer, "layer"),
            f"the vector enters the stream before this layer (default: {DEPTH:.0%} of the way in)",
            int,
        ),
        Setting(
            "coefficient",
            default(steer, "coefficient"),
            "how many times the vector is added",
            float,
        ),
        Setting("from_prompts", None, "the vector: mean activation of A minus that of B", count=2),
        Setting("token", None, "the vector: this token's unit unembedding direction"),
        Setting("position", None, "steer from this position on (default: every position)", int),
    ),
}
EXPERIMENTS = tuple(SETTINGS)


def check_settings(experiment: str, settings: dict[str, object]) -> dict[str, object]:
    """The experiment's settings with defaults filled in; a `RequestError` for a setting it does
    not take, a missing required one, or a value of the wrong kind or outside its choices."""
    if experiment not in SETTINGS:
        raise RequestError(
            f"'experiment' must be one of {', '.join(EXPERIMENTS)}; got {experiment!r}."
        )
    known = {s.name: s for s in SETTINGS[experiment]}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        takes = ", ".join(known) or "no settings"
        raise RequestError(f"{experiment} takes {takes}; not {', '.join(unknown)}.")
    checked = {}
    for name, setting in known.items():
        value = settings.get(name)
        if value is None:
            if setting.required:
                raise RequestError(f"{experiment} needs '{name}' ({setting.help}).")
            value = setting.default
        elif setting.count > 1:
            if not isinstance(value, list | tuple) or len(value) != setting.count:
                raise RequestError(f"'{name}' takes {setting.count} values, got {value!r}.")
            value = [str(v) for v in value]
        else:
            value = _kind(name, value, setting)
        checked[name] = value
    return checked


def _kind(name: str, value: object, setting: Setting) -> object:
    if setting.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, setting.kind) or isinstance(value, bool):
        raise RequestError(f"'{name}' must be {setting.kind.__name__}, got {value!r}.")
    if setting.choices is not None and value not in setting.choices:
        raise RequestError(f"'{name}' must be one of {', '.join(setting.choices)}; got {value!r}.")
    return value


@dataclass(frozen=True)
class RunSpec:
    """A run, as asked for. `model` is what loads it (hub id, catalog id, folder, .gguf file);
    `limit` takes the dataset's first rows only; `batch_size` rows go to the per-batch function
    at once; `workers` is the Ray engine's actor count (default: one per GPU, else per core)."""

    model: str
    data: str
    experiment: str
    out: str
    settings: dict[str, object] = field(default_factory=dict)
    limit: int | None = None
    engine: str = "local"
    ray_address: str | None = None
    batch_size: int = BATCH_SIZE
    workers: int | None = None
    device: str = "auto"  # where each worker runs the model (core/devices.placement)
    dtype: str = "auto"  # and in what precision

    def placement(self) -> Placement:
        """Where and in what precision a worker loads the model (one piece on `device`)."""
        return placement(self.device, self.dtype)

    def checked(self) -> RunSpec:
        """The spec with its settings' defaults filled in and paths made absolute; a
        `RequestError` for anything malformed."""
        if self.engine not in ENGINES:
            raise RequestError(f"'engine' must be local or ray; got {self.engine!r}.")
        for name in ("limit", "batch_size", "workers"):
            value = getattr(self, name)
            least = 0 if name == "limit" else 1
            whole = isinstance(value, int) and not isinstance(value, bool)
            if value is not None and (not whole or value < least):
                raise RequestError(f"'{name}' must be a whole number >= {least}, got {value!r}.")
        try:
            self.placement()
        except LmscopeError as error:
            raise RequestError(str(error)) from None
        if self.ray_address is not None and self.engine != "ray":
            raise RequestError("'ray_address' applies to the ray engine (--engine ray).")
        model = self.model
        if model.startswith((".", "/", "~")) or Path(model).expanduser().exists():
            model = str(Path(model).expanduser().resolve())
        return RunSpec(
            **(
                asdict(self)
                | {
                    "model": model,
                    "data": str(Path(self.data).expanduser().resolve()),
                    "out": str(Path(self.out).expanduser().resolve()),
                    "settings": check_settings(self.experiment, self.settings),
                }
            )
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict) -> RunSpec:
        return cls(**{k: document[k] for k in cls.__dataclass_fields__ if k in document})
