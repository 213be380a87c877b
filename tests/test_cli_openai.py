"""
The CLI's OpenAI-facing commands: estimate, the budget check before a run, retirement warnings.
"""

from __future__ import annotations

import datetime as dt

import pytest

from llmrec import cli
from llmrec.spec import parse_spec

SPEC = """
[experiment]
name = "est"
seed = 3
[dataset.synthetic]
users = 700
movies = 150
mean_ratings = 40
[sampling]
neighbors = 40
[finetune]
base_model = "gpt-4o-mini-2024-07-18"
[provider]
kind = "openai"
[provider.openai]
budget_usd = 0.01
[evaluation]
min_test_users = 5
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding the spec, made the working directory; no API key in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "s.toml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def test_estimate_prints_the_funnel_and_dollars_and_stores_the_cheap_stages(workdir, capsys):
    """estimate runs only the cheap stages (stored for the run) and prices both fine-tunes."""
    assert cli.main(["estimate", "s.toml", "--quiet"]) == 0
    out = capsys.readouterr().out

    assert "profileData50: " in out
    assert "eligible" in out
    assert out.count("training") >= 2
    assert "$" in out
    kinds = {p.name.split("_")[0].split("-")[0] for p in (workdir / "runs" / "est" / "stages").iterdir()}
    assert kinds == {"sample", "ground", "training", "load"}


def test_run_over_budget_refuses_before_any_request(workdir, capsys):
    """A budget below the estimate stops the run with exit 2 before a key is even needed."""
    code = cli.main(["run", "s.toml", "--quiet"])
    err = capsys.readouterr().err

    assert code == 2
    assert "provider.openai.budget_usd = 0.01: expected a budget above the run's estimated $" in err
    assert not (workdir / "reports").exists()


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2025, 1, 1), []),
        (dt.date(2026, 12, 1), ["shuts down on 2027-01-14 (secondary sources, written down 2026-12-01"]),
        (dt.date(2027, 1, 2), ["shuts down on 2027-01-14", "stops new fine-tuning jobs on 2027-01-06"]),
    ],
)
def test_retirement_warnings_follow_the_reported_dates(today, expected, monkeypatch):
    """Without a key the reported dates are used: a note within 90 days, a warning within the run."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    warnings = cli._retirement_warnings(parse_spec(SPEC), today)

    assert len(warnings) == len(expected)
    for warning, part in zip(warnings, expected, strict=True):
        assert part in warning


def test_validate_reads_the_shutdown_date_from_the_servers_models_endpoint(tmp_path, monkeypatch, capsys):
    """With a key, validate asks the run's server (the spec's base_url wins over OPENAI_BASE_URL) for
    its models; a shutdown_date inside the run's span is a warning naming the server as its source."""
    from tests.openai_server.fixture import start_server

    soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
    with start_server(
        tmp_path / "server", modes=("shutdown-dates",), extra_args=("--shutdown-date", soon)
    ) as s:
        spec = tmp_path / "s.toml"
        spec.write_text(SPEC.replace("budget_usd = 0.01", f'base_url = "{s.base_url}"'), encoding="utf-8")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-validate")
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
        code = cli.main(["validate", str(spec)])
        requests = s.requests()
    err = capsys.readouterr().err

    assert code == 0
    assert [r["path"] for r in requests] == ["/v1/models"]
    assert f"model gpt-4o-mini-2024-07-18 shuts down on {soon} (shutdown_date from the server's" in err
    assert "could not read the models endpoint" not in err


def test_polls_back_off_within_a_loop():
    """The stages wait once between their first polls, then 1.5x more per poll up to 10 waits."""
    from llmrec.stages.common import poll_backoff

    assert [poll_backoff(n) for n in range(1, 11)] == [1, 1, 1, 2, 3, 5, 7, 10, 10, 10]


def test_spent_so_far_counts_finished_stages_and_a_killed_stages_answers(tmp_path):
    """The budget of a resumed run starts at what the run directory already spent: recorded stage
    spend plus the answers a killed inference stage stored (answers copied from another stage are not
    paid twice)."""
    import json

    from llmrec.store import DiskRunStore, StageRecord

    store = DiskRunStore(tmp_path)
    done = store.stage("infer/a/baseline", "k1")
    done.finish(StageRecord("infer/a/baseline", "infer", "k1", 1.0, "2026-12-02T00:00:00", spend_usd=0.25))
    partial = store.stage("infer/a/finetuned", "k2")
    usage = {"prompt_tokens": 1000, "completion_tokens": 10, "cached_tokens": 0, "reasoning_tokens": 0}
    result = {"key": "r", "model": "m", "text": "", "usage": {**usage, "mode": "sync"}}
    log = partial.log("answers")
    log.append({"t": "sent", "fp": "a"})
    log.append({"t": "answer", "fp": "a", "result": result})
    log.append({"t": "answer", "fp": "b", "result": {**result, "usage": {**usage, "mode": "batch"}}})
    log.append({"t": "answer", "fp": "c", "result": result, "copied": True})
    store.close()
    (tmp_path / "stages" / "junk").mkdir()
    (tmp_path / "stages" / "junk" / "answers.jsonl").write_text("not json\n" + json.dumps({"t": "answer"}))

    def price(model: str, u) -> float:
        assert model == "m"
        return u.prompt_tokens / 1000 * (0.5 if u.mode == "batch" else 1.0)

    assert cli._spent_so_far(tmp_path, price) == pytest.approx(0.25 + 1.0 + 0.5)


def test_training_curves_complete_the_events_with_the_archived_result_file():
    """The report's curve has a point per step: the events' numbers merged by step with the result
    file's (OpenAI's per-step CSV, which wins where both have a step and fills the steps no event
    reported)."""
    import types
    from typing import Any, cast

    from llmrec.providers.base import JobEvent
    from llmrec.stages.finetune import read_steps

    csv_text = (
        "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"
        "1,2.5,0.1,,\n2,2.0,0.2,2.2,0.3\n3,1.5,0.3,,\nnot a row\n"
    )
    steps = read_steps(csv_text.encode())
    events = (
        JobEvent("e1", 1.0, "info", "step 2", metrics=(("step", 2.0), ("train_loss", 2.01))),
        JobEvent("e2", 2.0, "info", "done"),
        JobEvent("e3", 3.0, "info", "final", metrics=(("valid_hit_rate", 0.5),)),
    )
    outcome = types.SimpleNamespace(events=(("v", events),), steps=(("v", steps),))

    curves = cli._training_curves(cast(Any, outcome))

    assert steps[0] == (("step", 1.0), ("train_loss", 2.5), ("train_accuracy", 0.1))
    assert len(steps) == 3
    assert read_steps(b"\xff\xfe") == ()
    assert curves == [
        {
            "variant": "v",
            "points": [
                {"step": 1.0, "train_loss": 2.5},
                {"step": 2.0, "train_loss": 2.0, "valid_loss": 2.2},
                {"step": 3.0, "train_loss": 1.5},
                {"valid_hit_rate": 0.5},
            ],
        }
    ]
