"""
The Ray executor: the same results as the process pool, task errors re-raised as themselves, the
shared value put in the object store once per map, and ``llmrec run --executor ray`` end to end.

One local Ray instance (two CPUs) serves the whole module. Without the ``ray`` extra these tests skip;
under CI=true (``.ci/run`` installs the extra) a missing Ray fails them.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from llmrec.cli import main
from llmrec.data.synthetic import generate_synthetic
from llmrec.evaluate import run_experiment
from llmrec.executor import Executor, ExecutorError, ProcessExecutor
from llmrec.providers.fake import FakeProvider
from llmrec.ray_executor import RayExecutor, RayMissingError
from llmrec.spec import parse_spec


def require(name: str) -> ModuleType:
    """Import a test dependency: under CI=true a missing one fails the test, elsewhere it skips."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="module")
def ray_local():
    """
    One local Ray instance with two CPUs for the module, started the way a run starts one (by a
    RayExecutor, when first needed) and shut down by it after the module; every other executor in
    the module finds it running and uses it. Starting it keeps the caller's SIGTERM handler (the
    CLI's), which ray.init replaces.
    """
    ray = require("ray")
    if ray.is_initialized():
        ray.shutdown()
    owner = RayExecutor(num_cpus=2)
    assert not ray.is_initialized()  # nothing starts before a stage needs it
    original = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _callers_handler)
    try:
        assert owner.parallelism == 2
        assert signal.getsignal(signal.SIGTERM) is _callers_handler
    finally:
        signal.signal(signal.SIGTERM, original)
    yield ray
    owner.close()
    assert not ray.is_initialized()


def _callers_handler(signum: int, frame: object) -> None:
    """A SIGTERM handler of the caller's own."""


class _Shared:
    """A shared value holding a numpy array (what the stages hand over: the rating index)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


def _sum_range(shared: _Shared, bounds: tuple[int, int]) -> tuple[int, bool]:
    a, b = bounds
    return int(shared.values[a:b].sum()), bool(shared.values.flags.writeable)


def _fail_on(shared: int, task: int) -> int:
    if task == shared:
        msg = f"task {task}: bad input"
        raise ValueError(msg)
    return task * 2


TASKS = [(a, a + 37) for a in range(0, 1000, 37)]


def test_results_match_the_process_pool_in_task_order(ray_local):
    """RayExecutor.map gives ProcessExecutor's results, in task order, and counts finished tasks."""
    values = np.arange(1000, dtype=np.int64) ** 2
    executor: Executor = RayExecutor()
    finished: list[int] = []

    got = executor.map(_sum_range, _Shared(values), TASKS, done=finished.append)
    pooled = ProcessExecutor(2).map(_sum_range, _Shared(values), TASKS)

    assert [total for total, _ in got] == [total for total, _ in pooled]
    assert [total for total, _ in got] == [int(values[a:b].sum()) for a, b in TASKS]
    assert finished == list(range(1, len(TASKS) + 1))


def test_workers_read_the_shared_arrays_in_place(ray_local):
    """Workers see the shared arrays read-only: views of the object store, not per-task copies."""
    got = RayExecutor().map(_sum_range, _Shared(np.arange(100)), [(0, 10), (10, 20)])

    assert [writeable for _, writeable in got] == [False, False]


def test_the_shared_value_is_put_once_per_map(ray_local, monkeypatch):
    """However many tasks, one ray.put per map call: every task gets the same object reference."""
    puts: list[object] = []
    real_put = ray_local.put

    def counting_put(value, **kwargs):
        puts.append(value)
        return real_put(value, **kwargs)

    monkeypatch.setattr(ray_local, "put", counting_put)
    shared = _Shared(np.arange(1000))

    RayExecutor().map(_sum_range, shared, TASKS)

    assert len(TASKS) > 20
    assert puts == [shared]


def test_a_task_error_is_reraised_as_its_own_type(ray_local):
    """A task's exception reaches the caller with its type and message."""
    with pytest.raises(ValueError, match="task 3: bad input"):
        RayExecutor().map(_fail_on, 3, list(range(8)))


def test_parallelism_is_the_cluster_cpus(ray_local):
    """Stages size their tasks by the cluster's CPUs (two on the test instance)."""
    executor = RayExecutor()

    assert executor.parallelism == 2
    assert executor.map(_fail_on, -1, []) == []


SPEC = """
[experiment]
name = "ray-small"
seed = 3

[dataset.synthetic]
users = 600
movies = 150
mean_ratings = 40

[sampling]
users = 400
neighbors = 30
watched_min_stars = 2

[finetune]
base_model = "fake-llm"

[evaluation]
resamples = 50
permutations = 50
"""


def test_an_experiment_on_ray_matches_the_process_pool(ray_local):
    """run_experiment gives the same results with executor=RayExecutor() as with a process pool."""
    spec = parse_spec(SPEC)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)

    def results(executor: Executor) -> str:
        outcome = run_experiment(spec, dataset, FakeProvider.for_movies(dataset.movies), executor=executor)
        return json.dumps(outcome.results.to_dict(), sort_keys=True)

    on_ray = results(RayExecutor())
    pooled = results(ProcessExecutor(2))

    assert on_ray == pooled
    assert json.loads(on_ray)["variants"]


def test_cli_run_with_executor_ray(ray_local, tmp_path):
    """llmrec run --executor ray writes the same results.json as --executor process, and says which ran."""
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC, encoding="utf-8")

    def run(*flags: str) -> tuple[str, str]:
        out, runs = tmp_path / f"out{'-'.join(flags)}", tmp_path / f"runs{'-'.join(flags)}"
        code = main(["run", str(spec_path), "--out", str(out), "--runs", str(runs), "--quiet", *flags])
        assert code == 0
        last = json.loads((runs / "ray-small" / "last-run.json").read_text(encoding="utf-8"))
        return (out / "results.json").read_text(encoding="utf-8"), last["executor"]

    on_ray, ray_name = run("--executor", "ray")
    pooled, pool_name = run("--executor", "process", "--workers", "2")

    assert on_ray == pooled
    assert (ray_name, pool_name) == ("ray", "process×2")


def test_cli_without_ray_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    """Without the ray extra, --executor ray is bad input: exit 2, one error line naming the extra."""
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC, encoding="utf-8")

    code = main(["run", str(spec_path), "--out", str(tmp_path / "out"), "--executor", "ray"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "error: the ray executor needs Ray: install llmrec[ray] (pip install 'llmrec[ray]')"
    ]
    assert not (tmp_path / "out").exists()


def test_ray_executor_without_ray_raises_an_llmrec_error(monkeypatch):
    """RayExecutor() without Ray raises RayMissingError (an LlmrecError), not ImportError."""
    monkeypatch.setitem(sys.modules, "ray", None)

    with pytest.raises(RayMissingError, match=r"install llmrec\[ray\]"):
        RayExecutor()


def test_spec_execution_table_reaches_the_cli(ray_local, tmp_path):
    """[execution] executor = "ray" in the spec runs on Ray without the flag."""
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC + '\n[execution]\nexecutor = "ray"\n', encoding="utf-8")
    runs = tmp_path / "runs"

    code = main(["run", str(spec_path), "--out", str(tmp_path / "out"), "--runs", str(runs), "--quiet"])

    last = json.loads((runs / "ray-small" / "last-run.json").read_text(encoding="utf-8"))
    assert code == 0
    assert last["executor"] == "ray"
    assert Path(tmp_path / "out" / "results.json").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_cluster_fails_at_once(tmp_path, monkeypatch, capsys):
    """An unreachable RAY_ADDRESS: exit 1 with one line before any stage runs (Ray retries for minutes)."""
    require("ray")
    port = _closed_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC, encoding="utf-8")

    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")

    code = main(["run", str(spec_path), "--runs", runs, "--out", out, "--executor", "ray"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: cannot reach the Ray cluster at 127.0.0.1:{port}: ")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "ray-small" / "stages").exists()
    with pytest.raises(ExecutorError, match=r"cannot reach the Ray cluster at ray://127\.0\.0\.1"):
        RayExecutor(address=f"ray://127.0.0.1:{port}")
