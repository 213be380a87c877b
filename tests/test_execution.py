"""
[execution] and --executor choose where the parallel stages run; results never depend on it, so no
stage key reads it (the Ray executor itself: tests/test_ray_executor.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmrec.cli import main
from llmrec.errors import SpecError
from llmrec.spec import ExecutionSpec, parse_spec

SPEC = """
[experiment]
name = "execution"
seed = 4

[dataset.synthetic]
users = 500
movies = 150
mean_ratings = 40

[sampling]
users = 300
neighbors = 30

[finetune]
base_model = "fake-llm"

[evaluation]
resamples = 50
permutations = 50
"""


def _run(tmp_path, text: str, *flags: str) -> dict[str, Any]:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(text, encoding="utf-8")
    runs = tmp_path / "runs"
    code = main(
        ["run", str(spec_path), "--out", str(tmp_path / "out"), "--runs", str(runs), "--quiet", *flags]
    )
    assert code == 0
    last: dict[str, Any] = json.loads((runs / "execution" / "last-run.json").read_text(encoding="utf-8"))
    last["results"] = (tmp_path / "out" / "results.json").read_text(encoding="utf-8")
    return last


def test_changing_execution_reruns_no_stage(tmp_path):
    """A run over a stored run with another [execution] table computes no stage and gives the same results."""
    first = _run(tmp_path, SPEC)
    again = _run(tmp_path, SPEC + '\n[execution]\nexecutor = "process"\nworkers = 2\nray_address = "auto"\n')

    assert first["executor"] == "serial"
    assert again["executor"] == "process×2"
    assert any(s["computed"] for s in first["stages"])
    assert [s["computed"] for s in again["stages"]] == [False] * len(again["stages"])
    assert [s["key"] for s in again["stages"]] == [s["key"] for s in first["stages"]]
    assert again["results"] == first["results"]


def test_command_line_executor_wins_over_the_spec(tmp_path):
    """--executor serial overrides execution.executor; --workers overrides execution.workers."""
    serial = _run(
        tmp_path, SPEC + '\n[execution]\nexecutor = "process"\nworkers = 2\n', "--executor", "serial"
    )
    pooled = _run(
        tmp_path, SPEC + '\n[execution]\nexecutor = "serial"\n', "--executor", "process", "--workers", "2"
    )

    assert serial["executor"] == "serial"
    assert pooled["executor"] == "process×2"


def test_execution_defaults_and_checks():
    """[execution] defaults to the process pool sized by the CLI; bad values are spec problems."""
    assert parse_spec("").execution == ExecutionSpec(executor="process", workers=None, ray_address=None)

    with pytest.raises(SpecError) as error:
        parse_spec('[execution]\nexecutor = "dask"\nworkers = 0\n')

    assert [p.path for p in error.value.problems] == ["execution.executor", "execution.workers"]


def test_unknown_executor_flag_is_an_argument_error(tmp_path, capsys):
    """--executor accepts serial, process and ray only (argparse exits 2)."""
    with pytest.raises(SystemExit) as stop:
        main(["run", str(tmp_path / "spec.toml"), "--executor", "dask"])

    assert stop.value.code == 2
    assert "invalid choice: 'dask'" in capsys.readouterr().err
