"""
``python -m llmrec.report.demo``: the committed demo folder is rewritten only when its results change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.report.demo import main, refresh_report

TINY = """
[experiment]
name = "tiny"
seed = 3

[dataset.synthetic]
users = 600
movies = 150
mean_ratings = 40

[sampling]
neighbors = 60

[finetune]
base_model = "fake-llm"

[[variant]]
name = "mine"
watch_factor = 0.6
paper_table = 3
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_fresh_run_with_the_same_results_leaves_the_folder_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rerun from scratch the folder keeps its bytes; a stale page is re-rendered; other changes replace."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY, encoding="utf-8")
    out = tmp_path / "reports" / "tiny"

    assert main(["tiny.toml", str(out)]) == 0
    first = _files(out)
    manifest = json.loads(first["manifest.json"])
    assert {"index.html", "results.json", "predictions.jsonl", "manifest.json", "plotly.min.js"} <= set(first)
    assert f"{out}: rewritten" in capsys.readouterr().out
    assert json.loads(first["results.json"])["variants"][0]["paper_table"] == 3  # spec -> results -> page
    assert b"Paper Fine-tuned" in first["index.html"]

    assert main(["tiny.toml", str(out)]) == 0  # a fresh run store: new stage timings, same results
    assert f"{out}: unchanged" in capsys.readouterr().out
    assert _files(out) == first

    # a page rendered otherwise (an older llmrec's, say) is re-rendered; the results keep their times
    (out / "index.html").write_bytes(first["index.html"].replace(b"<h1>", b"<h1>old "))
    (out / "explorer" / "old.js").write_text("stale", encoding="utf-8")
    assert refresh_report("tiny.toml", out) is True
    assert _files(out) == first

    # a manifest that differs beyond its times (here: another spec text) is replaced by the new run's
    stale = {**manifest, "spec_text": manifest["spec_text"] + "# edited\n"}
    (out / "manifest.json").write_text(json.dumps(stale, indent=2) + "\n", encoding="utf-8")
    (out / "explorer" / "old.js").write_text("stale", encoding="utf-8")
    assert refresh_report("tiny.toml", out) is True
    now = _files(out)
    assert "explorer/old.js" not in now
    assert json.loads(now["manifest.json"])["spec_text"] == manifest["spec_text"]
    assert now["results.json"] == first["results.json"]
    assert json.loads(now["manifest.json"])["stages"] != manifest["stages"]  # the new run's own timings


def test_a_folder_that_is_not_a_report_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """OUT holding files but no results.json is never deleted: exit code 2, the folder named."""
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine", encoding="utf-8")

    assert main([str(tmp_path / "missing.toml"), str(other)]) == 2
    assert "expected a report folder (results.json)" in capsys.readouterr().err
    assert (other / "keep.txt").read_text(encoding="utf-8") == "mine"
