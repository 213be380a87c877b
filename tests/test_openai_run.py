"""
``llmrec run`` with provider.kind = "openai" end to end, through the real SDK over HTTP against the
wire-format test server: fine-tunes for both variants, zero-shot and fine-tuned inference, sync and
batch mode, and no trace of the key in any file written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.openai_server.fixture import start_server

SPEC = """
[experiment]
name = "oa"
seed = 3
[dataset.synthetic]
users = 700
movies = 150
mean_ratings = 40
[sampling]
neighbors = 40
[finetune]
base_model = "gpt-4o-mini-2024-07-18"
learning_rate_multiplier = 1.0
[provider]
kind = "openai"
[provider.openai]
poll_interval_s = 0.01
concurrency = 4
mode = "{mode}"
[evaluation]
baselines = ["popular"]
resamples = 40
permutations = 40
min_test_users = 5
"""

KEY = "sk-test-SECRET-never-written"


@pytest.mark.parametrize("mode", ["sync", "batch"])
def test_openai_run_end_to_end_against_the_test_server(tmp_path, mode):
    """Both variants are fine-tuned and both LLM columns answered; a rerun sends nothing again."""
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace("{mode}", mode), encoding="utf-8")
    with start_server(tmp_path / "server") as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        args = [sys.executable, "-m", "llmrec.cli", "run", str(spec), "--runs", str(tmp_path / "runs")]
        args += ["--out", str(tmp_path / "out"), "--quiet"]
        first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
        sent = len(server.requests())
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
        requests = server.requests()

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    models = {m["role"]: m["model"] for v in results["variants"] for m in v["models"]}
    assert models["finetuned"].startswith("ft:gpt-4o-mini-2024-07-18:")
    jobs = [r for r in requests if r["method"] == "POST" and r["path"] == "/v1/fine_tuning/jobs"]
    assert len(jobs) == 2
    if mode == "batch":
        assert any(r["path"] == "/v1/batches" and r["method"] == "POST" for r in requests)
        # only the capability probe's one tiny request (does the server honour seed?) is sent alone
        assert len([r for r in requests if r["path"] == "/v1/chat/completions"]) == 1
    assert len(requests) == sent  # the rerun found everything in the store
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    cost = manifest["cost"]
    assert 0 < cost["actual_usd"] <= cost["estimated_usd"]["worst"]
    assert cost["actual_usd"] == pytest.approx(cost["estimated_usd"]["expected"], rel=0.5)
    status = subprocess.run(
        [sys.executable, "-m", "llmrec.cli", "status", str(tmp_path / "runs" / "oa")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spent = float(status.strip().splitlines()[-1].removeprefix("spend so far: $"))
    assert spent == pytest.approx(cost["actual_usd"], abs=1e-4)  # status prints four decimals
    curves = manifest["training_curves"]
    assert len(curves) == 2
    archived = list((tmp_path / "runs" / "oa" / "stages").glob("finetune_*/result-0.csv"))
    assert len(archived) == 2  # OpenAI's per-step result files, kept in the store
    assert archived[0].read_text().startswith("step,")
    losses = [p["train_loss"] for p in curves[0]["points"] if "train_loss" in p]
    assert len(losses) >= 2
    assert losses[-1] < losses[0]
    for path in tmp_path.rglob("*"):
        if path.is_file() and "server" not in path.parts:
            assert "SECRET" not in path.read_text(encoding="utf-8", errors="replace"), path


def test_missing_key_is_bad_input(tmp_path):
    """Without OPENAI_API_KEY the run stops at once with exit 2 and a one-line message."""
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace("{mode}", "sync"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "llmrec.cli", "run", str(spec), "--runs", str(tmp_path / "r"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )

    assert done.returncode == 2
    assert "OPENAI_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    assert not Path(tmp_path / "reports").exists()


KILLS = [
    ("answer:30", "sync"),
    ("finetune-created:1", "sync"),
    ("stage-done:finetune:1", "sync"),
    ("batch-created:1", "batch"),
    ("answer:5", "batch"),
]


@pytest.mark.parametrize(("failpoint", "mode"), KILLS, ids=[f"{m}-{f}" for f, m in KILLS])
def test_killed_openai_run_resumes_without_asking_twice(tmp_path, failpoint, mode):
    """SIGKILL mid-inference, mid-batch and mid-fine-tune; the rerun re-attaches to the job or batch
    and, by the server's own request log, sends again only what was in flight at the kill."""
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace("{mode}", mode), encoding="utf-8")
    with start_server(tmp_path / "server") as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        args = [sys.executable, "-m", "llmrec.cli", "run", str(spec), "--runs", str(tmp_path / "runs")]
        args += ["--out", str(tmp_path / "out"), "--quiet"]
        killed = subprocess.run(
            args, env={**env, "LLMREC_FAILPOINT": failpoint}, capture_output=True, text=True, timeout=300
        )
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
        requests = server.requests()

    assert killed.returncode == -9, killed.stderr[-2000:]
    assert done.returncode == 0, done.stderr[-2000:]
    answered = [
        r["body_sha256"]
        for r in requests
        if r["path"] == "/v1/chat/completions" and r.get("status") == 200 and not r.get("fault")
    ]
    # a request answered by the server but not yet stored at the kill (at most the concurrency, 4)
    # is sent again, and the run says how many; none whose answer was stored is
    again = json.loads((tmp_path / "runs" / "oa" / "last-run.json").read_text())[
        "requests_sent_again_after_a_stop"
    ]
    assert len(answered) - len(set(answered)) <= again <= 4
    jobs = [r for r in requests if r["method"] == "POST" and r["path"] == "/v1/fine_tuning/jobs"]
    assert len(jobs) == 2  # one per variant: a lost job id was found again, not resubmitted
    batches = [r for r in requests if r["method"] == "POST" and r["path"] == "/v1/batches"]
    if mode == "batch":
        assert len(batches) == 4  # one per variant and LLM column, the killed one re-attached
    else:
        assert batches == []


def test_compatible_server_without_finetuning_runs_with_served_models(tmp_path):
    """A server that cannot fine-tune (like vLLM) runs the spec with each variant's served adapter."""
    spec = tmp_path / "s.toml"
    text = SPEC.replace("{mode}", "sync")
    text += '\n[[variant]]\nname = "profileData50"\nwatch_factor = 0.5\nmodel = "recs-lora"\n'
    text += '[[variant]]\nname = "profileData60"\nwatch_factor = 0.6\nneighbor_min_stars = 4\n'
    text += 'model = "recs-lora"\n'
    spec.write_text(text, encoding="utf-8")
    with start_server(
        tmp_path / "server", modes=("no-finetune",), extra_args=("--model", "recs-lora")
    ) as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        args = [sys.executable, "-m", "llmrec.cli", "run", str(spec), "--runs", str(tmp_path / "runs")]
        args += ["--out", str(tmp_path / "out"), "--quiet"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
        requests = server.requests()

    assert done.returncode == 0, done.stderr[-2000:]
    assert not any(r["path"].startswith("/v1/fine_tuning") and r["method"] == "POST" for r in requests)
    probe = json.loads((tmp_path / "runs" / "oa" / "probe.json").read_text())
    assert probe["finetuning"] is False
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {m["model"] for v in results["variants"] for m in v["models"] if m["role"] == "finetuned"} == {
        "recs-lora"
    }


def test_finetune_model_reuses_an_existing_fine_tune_and_trains_nothing(tmp_path):
    """finetune.model = "ft:..." (one variant) skips fine-tuning: no file is uploaded and no job is
    created; the fine-tuned column is that model's answers."""
    model = "ft:gpt-4o-mini-2024-07-18:org-llmrectest:llmrec:AbC123xy"
    spec = tmp_path / "s.toml"
    text = SPEC.replace("{mode}", "sync").replace(
        'base_model = "gpt-4o-mini-2024-07-18"', f'base_model = "gpt-4o-mini-2024-07-18"\nmodel = "{model}"'
    )
    text += '\n[[variant]]\nname = "profileData50"\nwatch_factor = 0.5\n'
    spec.write_text(text, encoding="utf-8")
    with start_server(tmp_path / "server", extra_args=("--model", model)) as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        args = [sys.executable, "-m", "llmrec.cli", "run", str(spec), "--runs", str(tmp_path / "runs")]
        args += ["--out", str(tmp_path / "out"), "--quiet"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
        requests = server.requests()

    assert done.returncode == 0, done.stderr[-2000:]
    assert not [
        r for r in requests if r["method"] == "POST" and r["path"] in ("/v1/files", "/v1/fine_tuning/jobs")
    ]
    chat = [r for r in requests if r["path"] == "/v1/chat/completions"]
    assert len(chat) > 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {m["model"] for v in results["variants"] for m in v["models"] if m["role"] == "finetuned"} == {
        model
    }
    assert not list((tmp_path / "runs" / "oa" / "stages").glob("finetune_*"))


def test_server_without_json_schema_refuses_a_json_spec(tmp_path):
    """A spec asking for JSON answers stops before any paid stage when the server lacks json_schema."""
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace("{mode}", "sync") + '\n[prompt]\noutput_mode = "json"\n', encoding="utf-8")
    with start_server(tmp_path / "server", modes=("no-json-schema",)) as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        args = [
            sys.executable,
            "-m",
            "llmrec.cli",
            "run",
            str(spec),
            "--runs",
            str(tmp_path / "runs"),
            "--quiet",
        ]
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path
        )
        requests = server.requests()

    assert done.returncode == 2
    assert 'prompt.output_mode = "json" needs json_schema' in done.stderr
    assert not any(r["path"] == "/v1/files" for r in requests)


def test_paper_spec_runs_against_the_test_server(tmp_path):
    """specs/paper.toml itself, pointed at the test server through OPENAI_BASE_URL, on Netflix-format
    files (synthetic): sync mode fine-tunes both variants and scores both LLM columns and all four
    classic baselines, with cost and training curves in the report; the same spec in batch mode
    (mode = "batch", and a short poll interval for the test's sake) answers through the Batch API
    over the same store (the fine-tunes reused); and against a compatible server without
    fine-tuning it runs with each variant's served model set (the spec has two variants, so
    finetune.model gives way to [[variant]] model)."""
    from llmrec.data.synthetic import write_synthetic_netflix

    root = Path(__file__).resolve().parents[1]
    paper = (root / "specs" / "paper.toml").read_text(encoding="utf-8")
    assert 'mode = "sync"' in paper
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "paper.toml").write_text(paper, encoding="utf-8")
    # the copies poll every 0.05 s instead of 30 s (test time only; paper.toml itself runs as it is)
    fast = paper.replace("concurrency = 8\n", "concurrency = 8\npoll_interval_s = 0.05\n", 1)
    assert fast != paper
    (tmp_path / "specs" / "batch.toml").write_text(
        fast.replace('mode = "sync"', 'mode = "batch"', 1), encoding="utf-8"
    )
    served = fast.replace(
        "neighbor_min_stars = 5\n\n[[variant]]", 'neighbor_min_stars = 5\nmodel = "recs-a"\n\n[[variant]]'
    )
    served = served.replace("neighbor_min_stars = 4\n", 'neighbor_min_stars = 4\nmodel = "recs-b"\n', 1)
    assert served.count('model = "recs-') == 2
    (tmp_path / "specs" / "served.toml").write_text(served, encoding="utf-8")
    write_synthetic_netflix(400_000, tmp_path / "data" / "netflix", seed=1)

    def run(spec: str, out: str, server) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        args = [sys.executable, "-m", "llmrec.cli", "run", spec, "--runs", "runs", "--out", out, "--quiet"]
        return subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
        )

    with start_server(tmp_path / "server") as server:
        done = run("specs/paper.toml", "out", server)
        assert done.returncode == 0, done.stderr[-3000:]
        sync_requests = server.requests()
        batch = run("specs/batch.toml", "out-batch", server)
        assert batch.returncode == 0, batch.stderr[-3000:]
        batch_requests = server.requests()[len(sync_requests) :]
    with start_server(
        tmp_path / "compatible",
        modes=("no-finetune", "no-batch"),
        extra_args=("--model", "recs-a", "--model", "recs-b"),
    ) as compatible:
        plain = run("specs/served.toml", "out-served", compatible)
        assert plain.returncode == 0, plain.stderr[-3000:]
        served_requests = compatible.requests()

    results = json.loads((tmp_path / "out" / "results.json").read_text())
    labels = {m["label"] for v in results["variants"] for m in v["models"]}
    assert {"Baseline", "Fine-tuned", "Random", "MostPopular", "ItemKNN", "EASE", "Ideal"} <= labels
    jobs = [r for r in sync_requests if r["method"] == "POST" and r["path"] == "/v1/fine_tuning/jobs"]
    assert len(jobs) == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["cost"]["actual_usd"] > 0
    assert manifest["cost"]["estimated_usd"]["expected"] > 0
    assert [c["variant"] for c in manifest["training_curves"]] == ["profileData50", "profileData60"]
    assert all(len([p for p in c["points"] if "train_loss" in p]) >= 2 for c in manifest["training_curves"])
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "Estimated and actual cost" in page
    assert "Training curves" in page
    assert 'id="training-chart"' in page

    # batch mode: one batch per variant and LLM column, no chat request but the probe's, no new job
    created = [r for r in batch_requests if r["method"] == "POST" and r["path"] == "/v1/batches"]
    assert len(created) == 4
    assert not [r for r in batch_requests if r["path"] == "/v1/fine_tuning/jobs" and r["method"] == "POST"]
    assert len([r for r in batch_requests if r["path"] == "/v1/chat/completions"]) <= 1
    batch_manifest = json.loads((tmp_path / "out-batch" / "manifest.json").read_text())
    assert 0 < batch_manifest["cost"]["actual_usd"] < manifest["cost"]["actual_usd"]  # half price
    assert len(batch_manifest["training_curves"]) == 2
    batch_page = (tmp_path / "out-batch" / "index.html").read_text(encoding="utf-8")
    assert "Training curves" in batch_page
    assert "Estimated and actual cost" in batch_page

    # a compatible server without fine-tuning: the served models answer, nothing is trained
    assert not [
        r for r in served_requests if r["path"].startswith("/v1/fine_tuning") and r["method"] == "POST"
    ]
    served_results = json.loads((tmp_path / "out-served" / "results.json").read_text())
    tuned = {m["model"] for v in served_results["variants"] for m in v["models"] if m["role"] == "finetuned"}
    assert tuned == {"recs-a", "recs-b"}
    assert json.loads((tmp_path / "runs" / "paper" / "probe.json").read_text())["finetuning"] is False
    for path in tmp_path.rglob("*"):
        if path.is_file() and "server" not in path.parts and "compatible" not in path.parts:
            assert "SECRET" not in path.read_text(encoding="utf-8", errors="replace"), path
