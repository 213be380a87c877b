"""
The command line end to end: files written, exit codes, messages, reruns, and the published numbers
recomputed independently from what the report folder holds.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmrec import cli
from llmrec.data import netflix
from llmrec.data.synthetic import generate_synthetic
from llmrec.errors import DataError
from llmrec.pipeline import expected_stages
from llmrec.spec import parse_spec

SMALL = """
[experiment]
name = "small"
seed = 3

[dataset.synthetic]
users = 1500
movies = 300
mean_ratings = 50

[sampling]
neighbors = 60

[finetune]
base_model = "fake-llm"
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """
    A fresh folder holding the small spec, made the working directory.
    """
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.toml").write_text(SMALL, encoding="utf-8")
    return tmp_path


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """
    One run of the small spec through the CLI, with a secret in the environment; the report folder.
    """
    root = tmp_path_factory.mktemp("published")
    (root / "small.toml").write_text(SMALL, encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("OPENAI_API_KEY", "sk-test-SECRET-should-never-be-written")
    try:
        code = cli.main(["run", "small.toml", "--quiet"])
    finally:
        mp.undo()
    assert code == 0
    return root


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_writes_the_report_folder(published):
    """A run writes the page, plotly.min.js, results, predictions, manifest, explorer/ and tables/."""
    out = published / "reports" / "small"
    results = json.loads((out / "results.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    html = (out / "index.html").read_text()

    assert {p.name for p in out.iterdir()} == {
        "index.html",
        "plotly.min.js",
        "results.json",
        "predictions.jsonl",
        "manifest.json",
        "explorer",
        "tables",
    }
    tables = sorted(p.name for p in (out / "tables").iterdir())
    assert {"table-2.csv", "table-2.tex", "table-3.csv", "table-3.tex"} <= set(tables)
    assert {"profileData50-counts.csv", "profileData60-comparisons.tex", "protocol.csv"} <= set(tables)
    assert {t.removesuffix(".csv") for t in tables if t.endswith(".csv")} == {
        t.removesuffix(".tex") for t in tables if t.endswith(".tex")
    }
    assert all(f'href="tables/{t}"' in html for t in tables)
    assert results["schema_version"] == 2
    assert [v["name"] for v in results["variants"]] == ["profileData50", "profileData60"]
    assert manifest["schema_version"] == 2
    assert manifest["spec_text"] == SMALL
    assert len(manifest["spec_hash"]) == 16
    # the manifest: versions, seeds, model ids and timestamps beside the spec as written and its hash
    assert {"llmrec", "python", "numpy", "plotly", "jinja2"} <= set(manifest["versions"])
    assert manifest["seeds"]["experiment"] == 3
    assert {(m["variant"], m["role"]) for m in manifest["models"]} == {
        (v, r) for v in ("profileData50", "profileData60") for r in ("baseline", "finetuned")
    }
    assert all(m["model"].startswith("ft:") for m in manifest["models"] if m["role"] == "finetuned")
    assert manifest["finished"].endswith("Z")
    assert all(s["finished"] for s in manifest["stages"])
    # every stage the run computed, with its key and recorded timing
    stages = {s["stage"]: s for s in manifest["stages"]}
    assert sorted(stages) == sorted(expected_stages(parse_spec(SMALL)))
    records = {
        r["stage"]: r
        for r in map(json.loads, map(Path.read_text, published.glob("runs/small/stages/*/record.json")))
    }
    for name, stage in stages.items():
        assert stage["key"] == records[name]["key"]
        assert stage["seconds"] == records[name]["seconds"] >= 0
        assert stage["finished"] == records[name]["finished"]
    assert stages["evaluate"]["seconds"] > 0
    assert "Table 2" in html
    assert "Table 3" in html
    assert "Figure 2" in html
    for section in (
        "Funnel",
        "LLM answers",
        "Title matching sensitivity",
        "Beyond accuracy",
        "Paired comparisons",
    ):
        assert section in html
    assert "fitted on ratings_without_test_users" in html
    assert list((published / "runs" / "small" / "stages").glob("infer_*/answers.jsonl"))


def test_secrets_never_reach_any_file(published):
    """The API key in the environment appears in no file the run wrote."""
    for path in published.rglob("*"):
        if path.is_file():
            assert "SECRET" not in path.read_text(encoding="utf-8", errors="replace"), path


ACCEPTED = {
    "exact": {"exact", "id"},
    "normalized": {"exact", "normalized", "id"},
    "fuzzy": {"exact", "normalized", "fuzzy", "id"},
}


def _reference_scores(record: dict[str, Any], names: list[str], matching: str) -> dict[str, float]:
    """
    An independent reading of the scoring rules, from a prediction record alone.
    """
    relevant = set(record["ground_truth"])
    firsts = []
    seen = set()
    for item in record["items"]:
        candidates = item["movie_ids"] if item["match"] in ACCEPTED[matching] else []
        good = sorted(set(candidates) & relevant)
        movie = good[0] if good else (min(candidates) if candidates else None)
        firsts.append(movie is not None and movie in relevant and movie not in seen)
        if movie is not None:
            seen.add(movie)
    out = {}
    for name in names:
        if "@" in name:
            base, k_text = name.split("@")
            k = int(k_text)
            h = sum(firsts[:k])
            p, r = h / k, h / len(relevant)
            by_base = {"precision": p, "recall": r, "f1": (2 * p * r / (p + r)) if p + r else 0.0}
            if base in by_base:
                out[name] = by_base[base]
        elif name == "mrr":
            out[name] = next((1 / (i + 1) for i, hit in enumerate(firsts) if hit), 0.0)
        elif name == "map":
            positions = [i + 1 for i, hit in enumerate(firsts) if hit]
            out[name] = sum((j + 1) / pos for j, pos in enumerate(positions)) / len(relevant)
    for name in names:
        base, _, k_text = name.partition("@")
        if base == "hitrate":
            out[name] = float(any(firsts[: int(k_text)]))
        elif base == "ndcg":
            k = int(k_text)
            dcg = sum(1 / math.log2(i + 2) for i, hit in enumerate(firsts[:k]) if hit)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
            out[name] = dcg / ideal
    return out


def _ideal_record(record: dict[str, Any]) -> dict[str, Any]:
    """
    A record whose list is the ground truth itself, cut at ten: the best possible answer.
    """
    truth = record["ground_truth"][:10]
    return {
        "ground_truth": record["ground_truth"],
        "items": [{"movie_ids": [m], "match": "id"} for m in truth],
    }


def test_results_recomputed_from_predictions(published):
    """Every metric in results.json equals the mean of an independent per-user recomputation."""
    out = published / "reports" / "small"
    results = json.loads((out / "results.json").read_text())
    records = _read_jsonl(out / "predictions.jsonl")
    names = results["metric_names"]
    matching = results["matching"]
    checked = 0
    for variant in results["variants"]:
        for model in variant["models"]:
            if model["role"] == "ideal":
                rows = [
                    _ideal_record(r)
                    for r in records
                    if r["variant"] == variant["name"] and r["role"] == "baseline"
                ]
            else:
                rows = [
                    r
                    for r in records
                    if r["variant"] == variant["name"]
                    and r["role"] == model["role"]
                    and (r["role"] != "classic" or r["model"] == model["label"])
                ]
            scores = [_reference_scores(r, names, matching) for r in rows]

            assert len(rows) == model["users"] == variant["counts"]["test_users"] > 0
            for name in names:
                assert model["metrics"][name] == pytest.approx(sum(s[name] for s in scores) / len(scores))
                checked += 1
    assert checked == 2 * 7 * len(names)
    assert len(names) == 12


def _brute_force_ground_truth(ratings, user, stars_min, watch, max_gt, neighbours_max, seed):
    """
    The paper's rule with plain loops over raw rating tuples.
    """
    by_user: dict[int, dict[int, tuple[int, int]]] = {}
    for u, m, s, d in zip(
        ratings.user.tolist(),
        ratings.movie.tolist(),
        ratings.stars.tolist(),
        ratings.day.tolist(),
        strict=True,
    ):
        by_user.setdefault(u, {})[m] = (s, d)
    mine = by_user[user]
    profile = sorted(mine, key=lambda m: (-mine[m][0], -mine[m][1], m))[:10]
    candidates = sorted(
        other
        for other, rated in by_user.items()
        if other != user and any(m in rated and rated[m][0] >= stars_min for m in profile)
    )
    if len(candidates) > neighbours_max:
        candidates = sorted(
            np.random.default_rng([seed, user]).choice(
                np.array(candidates), size=neighbours_max, replace=False
            )
        )
    counts: dict[int, int] = {}
    for other in candidates:
        for m in by_user[int(other)]:
            counts[m] = counts.get(m, 0) + 1
    kept = [m for m, c in counts.items() if m not in mine and c / len(candidates) >= watch]
    return profile, sorted(kept, key=lambda m: (-counts[m], m))[:max_gt]


def test_ground_truth_recomputed_by_brute_force(published):
    """For a few test users, plain loops over the raw ratings give the published profile and ground truth."""
    spec = parse_spec(SMALL)
    ratings = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed).ratings
    records = _read_jsonl(published / "reports" / "small" / "predictions.jsonl")
    rules = {"profileData50": (5, 0.5), "profileData60": (4, 0.6)}
    checked = 0
    for variant, (stars_min, watch) in rules.items():
        rows = [r for r in records if r["variant"] == variant and r["role"] == "baseline"][:4]
        for row in rows:
            profile, truth = _brute_force_ground_truth(ratings, row["user"], stars_min, watch, 10, 60, 3)

            assert row["profile"] == profile
            assert row["ground_truth"] == truth
            checked += 1
    assert checked == 8


def test_rerun_reuses_stored_answers_and_gives_identical_results(workdir, capsys):
    """A second run answers from runs/<name>/ and rewrites the report folder byte for byte."""
    assert cli.main(["run", "small.toml", "--quiet"]) == 0
    folder = workdir / "reports/small"
    first = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    # temporaries a killed run left mid-write (its pid is gone: no pid is this high)
    stale = [folder / ".results.json.99999999.tmp", workdir / "runs/small/.last-run.json.99999999.tmp"]
    stale += [next(folder.glob("*/")) / ".page.html.99999999.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    assert cli.main(["run", "small.toml", "--quiet"]) == 0
    last_run = json.loads((workdir / "runs/small/last-run.json").read_text())

    assert not [path for path in stale if path.exists()]

    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == first
    assert last_run["answers_reused_from_run_state"] > 0
    assert not any(s["computed"] for s in last_run["stages"] if s["kind"] != "load")
    summed = sum(s["seconds"] for s in last_run["stages"])
    assert 0 < last_run["report_seconds"] <= last_run["total_seconds"]
    assert summed + last_run["report_seconds"] <= last_run["total_seconds"] + 1e-3
    capsys.readouterr()
    assert cli.main(["status", "runs/small"]) == 0
    assert f"{last_run['total_seconds']:.2f} s in all" in capsys.readouterr().out
    assert cli.main(["run", "small.toml", "--quiet", "--fresh", "--out", "again"]) == 0
    assert (workdir / "again/results.json").read_bytes() == first[Path("results.json")]


def test_bad_spec_exits_2_with_every_problem_and_no_traceback(workdir, capsys):
    """A spec with two problems exits 2 and prints both, file first, without a traceback."""
    (workdir / "bad.toml").write_text("[sampling]\nusers = -3\n[provider]\nkind = 'opnai'\n")
    code = cli.main(["run", "bad.toml"])
    err = capsys.readouterr().err

    assert code == 2
    assert err == (
        "error: bad.toml has 2 problems\n"
        '  sampling.users = -3: expected an integer > 0 or "all"\n'
        '  provider.kind = "opnai": expected one of "fake", "openai", "local"\n'
    )


def test_missing_spec_file_exits_2(workdir, capsys):
    """A spec path that does not exist is bad input."""
    code = cli.main(["validate", "nope.toml"])

    assert code == 2
    assert "nope.toml" in capsys.readouterr().err


def test_validate_checks_inputs_only_when_asked(workdir, capsys):
    """validate passes a Netflix spec with a missing folder unless --check-inputs is given."""
    (workdir / "nf.toml").write_text('[dataset]\nformat = "netflix"\npath = "nowhere"\n')

    assert cli.main(["validate", "nf.toml"]) == 0
    assert cli.main(["validate", "nf.toml", "--check-inputs"]) == 2
    assert "dataset.path: expected an existing folder" in capsys.readouterr().err


def test_bad_data_file_exits_2_naming_file_and_line(workdir, capsys):
    """A malformed Netflix ratings file is reported with its path and line number."""
    data = workdir / "nf"
    data.mkdir()
    (data / "movie_titles.csv").write_bytes(b"1,2001,A Film\n")
    (data / "combined_data_1.txt").write_bytes(b"1:\n7,5,2005-01-01\n8,9,2005-01-02\n")
    (workdir / "nf.toml").write_text('[dataset]\nformat = "netflix"\npath = "nf"\n')
    code = cli.main(["run", "nf.toml"])
    err = capsys.readouterr().err

    assert code == 2
    assert "combined_data_1.txt:3" in err
    assert "Traceback" not in err


def test_local_provider_without_its_extra_says_how_to_install(workdir, capsys, monkeypatch):
    """provider.kind = "local" without llmrec[local] fails with exit 1 and a one-line instruction."""
    import llmrec.providers.local

    for name in ("torch", "transformers", "trl", "peft"):
        monkeypatch.setitem(sys.modules, name, None)  # "import torch" now fails, installed or not
    monkeypatch.setattr(llmrec.providers.local, "_LIBS", None)  # as in a process that never loaded them
    spec = SMALL.replace("[finetune]", '[provider]\nkind = "local"\n[finetune]')
    (workdir / "lo.toml").write_text(spec)
    code = cli.main(["run", "lo.toml", "--quiet"])
    err = capsys.readouterr().err

    assert code == 1
    assert "pip install 'llmrec[local]'" in err
    assert len(err.strip().splitlines()) == 1, err
    assert "provider failed" not in err  # nothing ran: no word of answers kept
    assert "Traceback" not in err


def test_interrupt_exits_130(workdir, monkeypatch, capsys):
    """Ctrl-C during a run exits 130 with a message, not a traceback."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_stages", interrupted)
    code = cli.main(["run", "small.toml", "--quiet"])

    assert code == 130
    assert "interrupted" in capsys.readouterr().err


def test_version_and_help(capsys):
    """--version prints the version; run --help lists the options; both exit 0."""
    with pytest.raises(SystemExit) as version:
        cli.main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.startswith("llmrec ")
    with pytest.raises(SystemExit) as help_:
        cli.main(["run", "--help"])

    assert help_.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_unknown_command_exits_2(capsys):
    """An unknown command is an argument error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])

    assert exc.value.code == 2


def test_data_synth_writes_readable_netflix_files(workdir, capsys):
    """llmrec data synth writes Netflix-format files that read back with the announced counts."""
    from llmrec.data.netflix import read_netflix

    code = cli.main(["data", "synth", "--ratings", "20000", "--out", "nf", "--seed", "4"])
    out = capsys.readouterr().out
    dataset = read_netflix(workdir / "nf")

    assert code == 0
    assert "20,000 ratings" in out
    assert len(dataset.ratings) == 20000
    assert (workdir / "nf" / "movie_titles.csv").exists()


def test_netflix_run_uses_the_parse_cache(workdir, monkeypatch):
    """A Netflix spec run parses once, then loads the cached arrays from runs/cache."""
    _netflix_spec(workdir)

    assert cli.main(["run", "nf.toml", "--quiet"]) == 0
    assert list((workdir / "runs" / "cache").iterdir())
    first = (workdir / "reports/nf/results.json").read_text()
    # the cache entry was written whole before the command returned (on a thread beside the stages)
    monkeypatch.setattr(netflix, "_read_ratings", _no_parse)
    assert cli.main(["run", "nf.toml", "--quiet", "--fresh"]) == 0
    assert (workdir / "reports/nf/results.json").read_text() == first


def _no_parse(*args: object) -> None:
    msg = "parsed although the parse cache should have answered"
    raise AssertionError(msg)


def _netflix_spec(workdir: Path) -> None:
    cli.main(["data", "synth", "--ratings", "30000", "--out", "nf", "--seed", "5"])
    (workdir / "nf.toml").write_text(
        SMALL.replace('name = "small"', 'name = "nf"').replace(
            "[dataset.synthetic]\nusers = 1500\nmovies = 300\nmean_ratings = 50\n",
            '[dataset]\nformat = "netflix"\npath = "nf"\n',
        )
        + "[evaluation]\nbaselines = []\nresamples = 100\npermutations = 100\n"
    )


def test_loader_swaps_in_the_cache_columns_once_written(workdir):
    """The CLI's loader gives the parsed dataset first, then, once the background write is done,
    the same dataset with the parse cache's columns mapped read-only."""
    from llmrec.background import BackgroundJobs
    from llmrec.providers.base import no_progress

    _netflix_spec(workdir)
    spec, _ = cli._load_spec("nf.toml")
    background = BackgroundJobs()
    loader = cli._dataset_loader(spec, workdir / "runs", no_progress, background)

    parsed = loader()
    assert not isinstance(parsed.ratings.user.base, np.memmap)
    assert background.finish() == []
    mapped = loader()

    assert mapped is not parsed
    assert isinstance(mapped.ratings.user.base, np.memmap)
    for a, b in zip(
        (parsed.ratings.user, parsed.ratings.movie, parsed.ratings.stars, parsed.ratings.day),
        (mapped.ratings.user, mapped.ratings.movie, mapped.ratings.stars, mapped.ratings.day),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert mapped.movies.titles == parsed.movies.titles
    assert loader() is mapped


def test_netflix_run_whose_cache_cannot_be_written_warns_and_finishes(workdir, capsys):
    """The parse cache is only for next time: a cache folder that cannot be made is a warning."""
    _netflix_spec(workdir)
    (workdir / "runs").mkdir()
    (workdir / "runs" / "cache").write_text("a file where the cache folder goes")

    code = cli.main(["run", "nf.toml", "--quiet"])
    err = capsys.readouterr().err

    assert code == 0
    assert "warning: " in err
    assert "cannot write the parse cache" in err
    assert "the next run parses the dataset again" in err
    assert (workdir / "reports/nf/results.json").is_file()


def test_failed_run_still_finishes_the_cache_write(workdir, monkeypatch, capsys):
    """A stage that fails after the load exits with its error, and the parse cache is written whole."""
    _netflix_spec(workdir)
    stored = threading.Event()
    real_store = netflix._store_parse

    def slow_store(*args: Any) -> Any:
        time.sleep(0.5)  # still writing when the stage fails
        mapped = real_store(*args)
        stored.set()
        return mapped

    def failing(spec, dataset, *args, **kwargs):
        dataset()
        msg = "a stage failed"
        raise DataError(msg, path="nf")

    monkeypatch.setattr(netflix, "_store_parse", slow_store)
    monkeypatch.setattr(cli, "run_stages", failing)
    code = cli.main(["run", "nf.toml", "--quiet"])

    assert code == 2
    assert "a stage failed" in capsys.readouterr().err
    assert stored.is_set()  # waited for before the command returned
    entries = [p.name for p in (workdir / "runs" / "cache").iterdir() if p.name != ".lock"]
    assert len(entries) == 1
    assert entries[0].startswith("ratings-")  # a whole entry, no temporary left


def test_interrupted_run_does_not_wait_for_the_cache_write(workdir, monkeypatch, capsys):
    """Ctrl-C after the load exits 130 at once, leaving the cache write (a daemon thread) behind."""
    _netflix_spec(workdir)
    release = threading.Event()

    def stuck_store(*args: Any) -> Any:
        release.wait(30)
        return args[2]  # the parsed dataset, as if the entry could not be read back

    def interrupted(spec, dataset, *args, **kwargs):
        dataset()
        raise KeyboardInterrupt

    monkeypatch.setattr(netflix, "_store_parse", stuck_store)
    monkeypatch.setattr(cli, "run_stages", interrupted)
    started = time.monotonic()
    code = cli.main(["run", "nf.toml", "--quiet"])
    seconds = time.monotonic() - started
    release.set()

    assert code == 130
    assert "interrupted" in capsys.readouterr().err
    assert seconds < 20  # not the 30 s the write would have held it


def test_bad_synth_arguments_exit_2(capsys):
    """A non-positive --ratings is an argument error."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["data", "synth", "--ratings", "0", "--out", "x"])

    assert exc.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_spec_path_that_is_a_folder_is_bad_input(workdir, capsys):
    """A folder given as the spec exits 2 with a message, before any work."""
    (workdir / "folder").mkdir()
    code = cli.main(["run", "folder", "--quiet"])

    assert code == 2
    assert "expected a spec file, but folder is a folder" in capsys.readouterr().err


def test_out_path_that_is_a_file_is_bad_input(workdir, capsys):
    """--out under a file exits 2 naming it, before the dataset is read or anything is run."""
    (workdir / "taken").write_text("x")
    code = cli.main(["run", "small.toml", "--quiet", "--out", "taken/report"])
    err = capsys.readouterr().err

    assert code == 2
    assert "--out taken/report: expected a folder, but taken is a file" in err
    assert not (workdir / "runs").exists()


def test_runs_path_under_a_file_is_bad_input(workdir, capsys):
    """--runs under a file exits 2 naming it, before any work (no report folder, no run folder)."""
    (workdir / "taken").write_text("x")
    code = cli.main(["run", "small.toml", "--quiet", "--runs", "taken/runs"])
    err = capsys.readouterr().err

    assert code == 2
    assert err == (
        "error: small.toml has 1 problem\n"
        "  top level: --runs taken/runs: expected a folder, but taken is a file\n"
    )
    assert not (workdir / "reports").exists()


def test_paid_run_refuses_too_few_test_users_unless_allow_small(workdir, monkeypatch, capsys):
    """provider.kind = "openai" (here answered by the fake) with fewer test users than
    evaluation.min_test_users: exit 2 before any fine-tune or request; --allow-small runs it, and the
    report flags the variants."""
    from llmrec.providers.base import as_backend
    from llmrec.providers.fake import FakeProvider

    fakes: list[FakeProvider] = []

    def backend(spec, dataset, run_dir, progress, budget=None):
        fakes.append(FakeProvider(lambda: [dataset().movies.display(int(m)) for m in dataset().movies.ids]))
        return as_backend(fakes[-1])

    monkeypatch.setattr(cli, "_backend", backend)
    monkeypatch.setattr(cli, "_probe", lambda spec, backend, run_dir, source: backend)
    text = SMALL.replace("[finetune]", '[provider]\nkind = "openai"\n[finetune]') + (
        "[evaluation]\nmin_test_users = 100000\nbaselines = []\n"
    )
    (workdir / "paid.toml").write_text(text, encoding="utf-8")

    code = cli.main(["run", "paid.toml", "--quiet"])
    err = capsys.readouterr().err

    assert code == 2
    assert err.startswith("error: paid.toml: profileData50 (")
    assert err.endswith("a paid run refuses to start (pass --allow-small to run anyway)\n")
    assert fakes[0].uploads == []
    assert fakes[0].completions == []
    assert not list((workdir / "runs" / "small" / "stages").glob("finetune_*"))
    assert not (workdir / "reports").exists()

    assert cli.main(["run", "paid.toml", "--quiet", "--allow-small"]) == 0
    results = json.loads((workdir / "reports" / "small" / "results.json").read_text())
    assert [v["min_test_users"] for v in results["variants"]] == [100000, 100000]
    assert "Too few test users in profileData50" in (workdir / "reports" / "small" / "index.html").read_text()
