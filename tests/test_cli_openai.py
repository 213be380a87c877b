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
        (dt.date(2026, 12, 1), ["shuts down on 2027-01-14 (secondary sources"]),
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
