"""
``llmrec run`` with provider.kind = "local" end to end on a tiny model built from a config (no
download): LoRA fine-tunes for both variants, zero-shot and adapter answers, a report; a rerun
reuses the stored adapters without training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.providers.local_tiny_lm import build_tiny_model, demo_examples, tokenizer_texts
from tests.providers.test_local import require_extra

SPEC = """
[experiment]
name = "local"
seed = 7

[dataset.synthetic]
users = 3000
movies = 400
mean_ratings = 60
tastes = 8

[sampling]
users = 120

[finetune]
base_model = "{model}"
batch_size = 8
epochs = 1
learning_rate = 0.01

[finetune.lora]
rank = 8
alpha = 16

[provider]
kind = "local"

[provider.local]
device = "cpu"
generation_batch_size = 16

[inference]
max_completion_tokens = 24

[evaluation]
baselines = []
resamples = 20
permutations = 20
"""


def test_local_run_end_to_end(tmp_path: Path):
    """Both variants are fine-tuned; the adapter's answers differ from the base model's for >= 90 %
    of test users; a rerun trains nothing."""
    require_extra()
    model = build_tiny_model(tmp_path / "model", tokenizer_texts(demo_examples(64)))
    (tmp_path / "spec.toml").write_text(SPEC.replace("{model}", str(model)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [
        sys.executable,
        "-m",
        "llmrec.cli",
        "run",
        "spec.toml",
        "--runs",
        "runs",
        "--out",
        "out",
        "--quiet",
    ]

    first = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    again = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )

    assert first.returncode == 0, first.stderr[-3000:]
    assert again.returncode == 0, again.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    answers: dict[tuple[str, int], dict[str, str]] = {}
    for r in records:
        answers.setdefault((r["variant"], r["user"]), {})[r["role"]] = r["raw_text"]
    differ = [a["baseline"] != a["finetuned"] for a in answers.values()]
    assert len(differ) >= 10
    assert sum(differ) >= 0.9 * len(differ)
    assert (tmp_path / "out" / "index.html").exists()
    # the job events' losses are the report's training curves: a training loss per optimizer step and a
    # validation loss per epoch (epochs = 1), for each variant
    report = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(report["training_curves"]) == 2
    for curve in report["training_curves"]:
        steps = [p["step"] for p in curve["points"] if "train_loss" in p]
        valid = [p for p in curve["points"] if "valid_loss" in p]
        assert steps == list(range(1, len(steps) + 1))
        assert len(steps) >= 5
        assert len(valid) == 1
    assert 'id="training-chart"' in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    manifest = json.loads((tmp_path / "runs" / "local" / "last-run.json").read_text())
    finetunes = [s for s in manifest["stages"] if s["kind"] == "finetune"]
    assert len(finetunes) == 2
    assert not any(s["computed"] for s in finetunes)
    assert not any(s["computed"] for s in manifest["stages"] if s["kind"] == "infer")
