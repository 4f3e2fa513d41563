"""The Ray engine: the same per-batch function on the actors of a local two-worker cluster gives the
rows of the local engine; lmscope works, and says what to install, without Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_runs import induction_rows, stored, worst_difference, write_jsonl

import lmscope
from lmscope.runs import RunSpec, execute
from lmscope.runs.engines import ray_plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of two CPUs, shut down after the module's tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.mark.parametrize(
    ("experiment", "settings"),
    [("patch", {"component": "heads", "scan": "atp"}), ("profile", {})],
)
def test_the_ray_engine_gives_the_rows_of_the_local_engine(cluster, tmp_path, experiment, settings):
    data = write_jsonl(tmp_path / "d.jsonl", induction_rows() * 3 + [{"prompt": ""}])
    spec = RunSpec(model="demo", data=data, experiment=experiment, out=str(tmp_path / "ray"),
                   settings=settings, engine="ray", workers=2, batch_size=4)  # fmt: skip
    on_ray = execute(spec)
    local = execute(RunSpec(**spec.to_dict() | {"engine": "local", "workers": None,
                                                "out": str(tmp_path / "local")}),
                    lm=lmscope.load("demo"))  # fmt: skip
    assert on_ray.manifest()["status"] == local.manifest()["status"] == "complete"
    assert on_ray.skipped() == local.skipped() and [row for row, _ in local.skipped()] == [25]
    ray_rows, local_rows = stored(on_ray), stored(local)
    assert worst_difference(ray_rows, local_rows) <= 1e-6
    assert on_ray.manifest()["model"]["card"] == local.manifest()["model"]["card"]
    assert cluster.is_initialized()  # a cluster the caller started is left running


def test_actors_follow_the_cluster_one_per_gpu_else_sharing_the_cpus():
    assert ray_plan({"CPU": 16, "GPU": 4}, None) == (4, 1, 1)
    assert ray_plan({"CPU": 8}, None) == (8, 1, 0)
    assert ray_plan({"CPU": 8}, 2) == (2, 4, 0)
    assert ray_plan({"CPU": 2}, 5) == (2, 1, 0)


def test_lmscope_runs_without_ray_and_the_ray_engine_says_what_to_install(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", induction_rows()[:2])
    script = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now fails, as when not installed
        "import lmscope, lmscope.runs\n"
        "from lmscope.cli import main\n"
        "assert main(['run', '--model', 'demo', '--data', sys.argv[1], '--experiment', 'lens',"
        " '--out', sys.argv[2]]) == 0\n"
        "sys.exit(main(['run', '--model', 'demo', '--data', sys.argv[1], '--experiment', 'lens',"
        " '--out', sys.argv[3], '--engine', 'ray']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, data, str(tmp_path / "a"), str(tmp_path / "b")],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "lmscope: The Ray engine needs Ray: pip install 'lmscope[ray]' (or 'ray[data]')."
    )
    assert not (tmp_path / "b").exists()  # refused before anything was written
