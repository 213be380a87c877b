"""
Tests for the report's content beyond Tables 2/3 and Figure 2: header and banners, verdicts,
significance letters, the paper's columns, downloads, the explorer's data, and ``llmrec report``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import pytest

from llmrec.cli import main
from llmrec.report import render_index, render_report, report_files
from llmrec.report.explorer import explorer_files
from llmrec.report.render import RunSummary, report_tables
from llmrec.report.tables import (
    DataColumn,
    DataTable,
    Entry,
    data_table_csv,
    data_table_latex,
    file_stem,
    metric_table,
    paper_tables,
    table_csv,
    table_latex,
)
from llmrec.results import (
    Comparison,
    ModelScores,
    Popularity,
    Prediction,
    PredictionItem,
    Results,
    VariantResults,
)
from llmrec.stages.evaluate import decode_predictions

DEMO = Path(__file__).resolve().parents[1] / "reports" / "demo"
NAMES = ("precision@3", "recall@3", "mrr")
MANIFEST = {
    "experiment": "x",
    "spec_hash": "abc123def456",
    "provider": "fake",
    "backend": "fake(min_z=4)",
    "dataset": {"format": "synthetic", "path": None},
    "models": [
        {"variant": "profileData50", "role": "baseline", "model": "fake-llm"},
        {"variant": "profileData50", "role": "finetuned", "model": "ft:fake-llm:x:1"},
    ],
    "finished": "2026-01-02T03:04:05+00:00",
}


def _model(role: str, label: str, values: tuple[float, ...]) -> ModelScores:
    return ModelScores(
        role,  # type: ignore[arg-type]
        label,
        f"{label.lower()}-model",
        100,
        0,
        tuple(zip(NAMES, values, strict=True)),
        intervals=tuple((n, v - 0.01, v + 0.01) for n, v in zip(NAMES, values, strict=True)),
    )


def _comparison(a: str, b: str, metric: str, difference: float, p_holm: float) -> Comparison:
    return Comparison(a, b, metric, 100, 0.5, 0.5 - difference, difference, -0.1, 0.1, p_holm, p_holm)


def _variant(
    name: str = "profileData50", test_users: int = 100, min_test_users: int | None = 50
) -> VariantResults:
    return VariantResults(
        name=name,
        sampling=(("watch_factor", 0.5),),
        counts=(
            ("eligible_users", 1000),
            ("sampled_users", 900),
            ("with_ground_truth", 800),
            ("test_users", test_users),
        ),
        models=(
            _model("baseline", "Baseline", (0.1, 0.05, 0.2)),
            _model("finetuned", "Fine-tuned", (0.4, 0.2, 0.5)),
            _model("classic", "EASE", (0.3, 0.25, 0.4)),
            _model("ideal", "Ideal", (0.9, 0.9, 1.0)),
        ),
        comparisons=(
            _comparison("Fine-tuned", "Baseline", "precision@3", 0.3, 0.001),
            _comparison("Fine-tuned", "Baseline", "recall@3", 0.15, 0.2),
            _comparison("Fine-tuned", "Baseline", "mrr", 0.3, 0.001),
            _comparison("Fine-tuned", "EASE", "precision@3", 0.1, 0.01),
            _comparison("Fine-tuned", "EASE", "recall@3", -0.05, 0.04),
            _comparison("Fine-tuned", "EASE", "mrr", 0.1, 0.3),
        ),
        confidence=0.95,
        min_test_users=min_test_users,
    )


def _results(*variants: VariantResults) -> Results:
    return Results("x", "A title", NAMES, variants or (_variant(),))


def test_header_lists_manifest_facts_and_simulator_banner() -> None:
    """The header: date, dataset and size, provider, base and fine-tuned ids, spec hash; fake: a banner."""
    page = render_report(_results(), manifest=MANIFEST)
    header = page[: page.index("</header>")]

    for text in ("2026-01-02T03:04:05+00:00", "synthetic, 1,000 eligible users", "fake — fake(min_z=4)"):
        assert text in header
    assert "<dt>Base model</dt><dd>fake-llm</dd>" in header
    assert "ft:fake-llm:x:1 (profileData50)" in header
    assert "<dt>Spec hash</dt><dd>abc123def456</dd>" in header
    assert "These LLM numbers come from a simulator" in header
    assert "simulator" not in render_report(_results(), manifest={**MANIFEST, "provider": "openai"}).lower()
    with_catalogue = _results(attrs.evolve(_variant(), popularity=Popularity(catalogue=17_770)))
    assert "synthetic, 1,000 eligible users, 17,770 movies" in render_report(
        with_catalogue, manifest=MANIFEST
    )


def test_too_small_variant_gets_a_banner_and_a_verdict_warning() -> None:
    """A variant with fewer test users than min_test_users is flagged in the header and in its verdict."""
    page = render_report(_results(_variant(test_users=3, min_test_users=100)))

    assert 'id="banner-small-2"' in page
    assert "Too few test users in profileData50:</strong> 3 scored, the spec asks for at least 100" in page
    assert "Only 3 test users" in page
    assert "banner-small" not in render_report(_results())


def test_verdict_names_winners_and_significant_directions() -> None:
    """The verdict says who wins each metric (not Ideal), which differences are significant, which way."""
    page = render_report(_results())
    verdict = page[page.index('id="verdict-2"') : page.index("</ul>", page.index('id="verdict-2"'))]

    assert "Fine-tuned has the best value on 2 of 3 metrics (Precision@3, MRR)." in verdict
    assert "EASE has the best value on 1 of 3 metrics (Recall@3)." in verdict
    assert "Ideal" not in verdict
    assert (
        "Fine-tuned vs Baseline: significantly better on 2 of 3 (Precision@3, MRR); "
        "no significant difference on 1 of 3 (Holm-corrected p &lt; 0.05)." in verdict
    )
    assert (
        "Fine-tuned vs EASE: significantly better on 1 of 3 (Precision@3); "
        "significantly worse on 1 of 3 (Recall@3)" in verdict
    )


def test_significance_letters_carry_direction_and_best_cell_is_bold() -> None:
    """A cell lists the letters of the columns it significantly beats; a loss marks the winner's cell."""
    table = metric_table(2, _variant(), NAMES)
    letters = {c.label: c.letter for c in table.columns}
    rows = dict(table.rows)

    assert letters == {
        "Baseline": "a",
        "Fine-tuned": "b",
        "EASE": "c",
        "Ideal": "",
        "Paper Baseline": "",
        "Paper Fine-tuned": "",
    }
    assert rows["Precision@3"][1].beats == ("a", "c")
    assert rows["Recall@3"][1].beats == ()  # n.s. against Baseline, a loss against EASE
    assert rows["Recall@3"][2].beats == ("b",)
    assert [c.best for c in rows["Recall@3"]][:4] == [False, False, True, False]  # Ideal never bold
    assert rows["MRR"][1].best


def test_paper_column_holds_published_values_and_difference() -> None:
    """profileData50 gets Table 2's published values and our value minus the paper's; other names none."""
    table = metric_table(2, _variant(), NAMES)
    rows = dict(table.rows)
    paper_ft = rows["Precision@3"][-1]

    assert table.paper is not None
    assert table.paper.number == 2
    assert paper_ft.value == "0.4284"
    assert paper_ft.note == f"Δ {0.4 - 0.4284:+.4f}"
    assert rows["Precision@3"][-2].value == "0.0198"
    assert metric_table(2, _variant(name="mine"), NAMES).paper is None
    assert [(t.number, t.variant) for t in paper_tables()] == [(2, "profileData50"), (3, "profileData60")]
    assert dict(paper_tables()[1].values)["finetuned"][-1] == ("map", 0.3009)


def test_table_csv_and_latex() -> None:
    """The CSV has a value and interval per column; the LaTeX uses booktabs, bold best cells, superscripts."""
    table = metric_table(2, _variant(), NAMES)
    csv_rows = table_csv(table).splitlines()
    latex = table_latex(table)

    assert csv_rows[0].startswith("metric,Baseline,Baseline low,Baseline high,Fine-tuned,")
    assert csv_rows[0].endswith(",Paper Baseline,Paper Fine-tuned")
    assert csv_rows[1].startswith("Precision@3,0.1,0.0900,0.1100,0.4,0.3900,0.4100,")
    assert "\\toprule" in latex
    assert "\\midrule" in latex
    assert "\\bottomrule" in latex
    assert "\\textbf{0.4000}$^{ac}$" in latex
    assert (
        "Metric & Baseline (a) & Fine-tuned (b) & EASE (c) & Ideal & Paper Baseline & Paper Fine-tuned \\\\"
        in latex
    )


def test_report_files_hold_tables_explorer_and_are_deterministic() -> None:
    """report_files gives the page, plotly.js, the explorer data and the tables, the same bytes twice."""
    preds = _predictions(5)
    first = report_files(_results(), manifest=MANIFEST, predictions=preds)
    second = report_files(_results(), manifest=dict(MANIFEST), predictions=list(preds))

    assert first == second
    assert sorted(first) == [
        "explorer/1.js",
        "explorer/titles.js",
        "index.html",
        "plotly.min.js",
        *(
            f"tables/{stem}.{ext}"
            for stem in (
                "manifest",
                "profileData50-comparisons",
                "profileData50-counts",
                "profileData50-models",
                "profileData50-sampling",
                "protocol",
                "table-2",
            )
            for ext in ("csv", "tex")
        ),
    ]
    page = first["index.html"]
    assert '<script src="explorer/1.js"></script>' in page
    assert '<script src="explorer/titles.js"></script>' in page


def test_results_json_is_embedded_and_re_extractable() -> None:
    """The page embeds results.json (NaN as null); the numbers come back from the HTML alone."""
    variant = _variant()
    nan_model = attrs.evolve(
        variant.models[0], metrics=(("precision@3", math.nan), *variant.models[0].metrics[1:])
    )
    results = _results(attrs.evolve(variant, models=(nan_model, *variant.models[1:])))
    page = render_report(results)
    raw = re.search(r'<script type="application/json" id="results-data">(.*?)</script>', page, re.S)

    assert raw is not None
    data = json.loads(raw.group(1))
    assert data["variants"][0]["models"][1]["metrics"]["mrr"] == 0.5
    assert data["variants"][0]["models"][0]["metrics"]["precision@3"] is None


def _predictions(users: int, title: str = "Movie", classic: tuple[str, ...] = ("EASE",)) -> list[Prediction]:
    out = []
    for u in range(users):
        for role, model in (
            ("baseline", "base"),
            ("finetuned", "ft:base"),
            *(("classic", c) for c in classic),
        ):
            items = tuple(
                PredictionItem(
                    rank=r + 1,
                    title=f"{title} {u * 7 + r} ({1950 + r})"
                    if role == "classic"
                    else f"{title} {u * 7 + r}",
                    match="id" if role == "classic" else ("unmatched" if r == 9 else "exact"),
                    movie_ids=(u * 7 + r,),
                    scored_as=u * 7 + r,
                    hit=role == "finetuned" and r == 0,
                    text=None if role == "classic" else f"{title} {u * 7 + r} ({1950 + r})",
                )
                for r in range(10)
            )
            raw = None if role == "classic" else "\n".join(f"{i.rank}. {i.text}" for i in items)
            out.append(
                Prediction(
                    variant="profileData50",
                    seed=7,
                    role=role,
                    model=model,
                    user=u,
                    profile=tuple(range(10)),
                    ground_truth=(u * 7,),
                    items=items,
                    ranked=tuple(i.scored_as for i in items),
                    metrics=(("precision@3", 0.0),),
                    profile_titles=tuple(f"Profile movie {u + k} ({1990 + k})" for k in range(10)),
                    ground_truth_titles=(f"{title} {u * 7}",),
                    raw_text=raw,
                )
            )
    return out


def test_explorer_data_shape_and_escaping() -> None:
    """Each user holds profile, ground truth, each model's items with hits; markup is escaped in the JSON."""
    evil = "</script><img src=x onerror=alert(1)>"
    files = explorer_files(_predictions(2, title=evil))
    js = files["explorer/1.js"]
    data = json.loads(js.removeprefix("window.llmrecExplorer.push(").removesuffix(");\n"))
    titles = json.loads(
        files["explorer/titles.js"].removeprefix("window.llmrecTitles = ").removesuffix(";\n")
    )

    assert "<" not in js
    assert "<" not in files["explorer/titles.js"]
    assert [m[1] for m in data["models"]] == ["baseline", "finetuned", "classic"]
    user = data["users"][0]
    assert [titles[i] for i in user[2]] == [f"{evil} 0"]
    base, tuned, classic = user[3]
    assert base[2] == 0
    assert classic[2] is None
    assert tuned[1][0][1] == 1
    assert base[1][0][1] == 0
    assert base[1][9][2] == "unmatched"


def test_explorer_stays_under_two_megabytes_at_1000_test_users() -> None:
    """1,000 test users with the demo's six lists of ten each: explorer data and page stay under 2 MB."""
    preds = _predictions(1000, classic=("Random", "MostPopular", "ItemKNN", "EASE"))
    files = report_files(_results(), manifest=MANIFEST, predictions=preds)
    size = sum(len(v.encode()) for k, v in files.items() if k != "plotly.min.js")

    assert size < 2_000_000, size


def test_index_lists_runs_and_compares_two() -> None:
    """The index links each run's report with headline metrics and compares the first two side by side."""
    a = _results()
    b = attrs.evolve(a, experiment="y")
    page = render_index([RunSummary("x/index.html", a, MANIFEST), RunSummary("y/index.html", b)])

    assert '<a href="x/index.html">x</a>' in page
    assert '<a href="y/index.html">y</a>' in page
    assert "Side by side: x / y" in page
    assert "0.5000 / 0.5000 (+0.0000)" in page
    assert "Ideal" not in page


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    if not (DEMO / "results.json").is_file():
        pytest.fail("reports/demo/results.json is committed with the repository")
    src = tmp_path / "src"
    shutil.copytree(DEMO, src)
    return src


def test_cli_report_rebuilds_from_a_report_folder(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`llmrec report FOLDER --out DIR` writes DIR/<experiment>/ with the page, data, tables, and an index."""
    out = tmp_path / "out"

    assert main(["report", str(demo_copy), "--out", str(out)]) == 0
    folder = out / "demo"
    for name in (
        "index.html",
        "plotly.min.js",
        "results.json",
        "manifest.json",
        "predictions.jsonl",
        "explorer/1.js",
        "tables/table-2.tex",
    ):
        assert (folder / name).is_file(), name
    assert (folder / "results.json").read_bytes() == (demo_copy / "results.json").read_bytes()
    assert '<a href="demo/index.html">demo</a>' in (out / "index.html").read_text(encoding="utf-8")
    first = (folder / "index.html").read_bytes()
    assert main(["report", str(folder), "--out", str(out)]) == 0  # rebuilding the rebuilt folder in place
    assert (folder / "index.html").read_bytes() == first
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out


def test_cli_report_reads_a_run_directory(demo_copy: Path, tmp_path: Path) -> None:
    """A run directory's evaluate stage is enough: no provider, no dataset, no manifest."""
    stage = tmp_path / "runs" / "demo" / "stages" / "evaluate-0123"
    stage.mkdir(parents=True)
    results = json.loads((demo_copy / "results.json").read_text(encoding="utf-8"))
    (stage / "results.json").write_text(json.dumps(results), encoding="utf-8")
    shutil.copy(demo_copy / "predictions.jsonl", stage / "predictions.jsonl")
    out = tmp_path / "out"

    assert main(["report", str(tmp_path / "runs" / "demo"), "--out", str(out)]) == 0
    page = (out / "demo" / "index.html").read_text(encoding="utf-8")
    assert "No run manifest was given" in page
    assert 'id="explorer-users"' in page
    assert len(decode_predictions((out / "demo" / "predictions.jsonl").read_bytes())) > 0


def test_cli_report_names_a_bad_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that is neither a report nor a run directory is a clear error, exit code 2."""
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "expected a report folder (results.json) or a run directory (stages/)" in capsys.readouterr().err


def test_usage_and_finetune_jobs_come_from_the_manifest() -> None:
    """The tokens section lists the manifest's usage and each fine-tune job's id, status, model, tokens."""
    manifest = {
        **MANIFEST,
        "usage": {"prompt_tokens": 140426, "completion_tokens": 67153},
        "finetune_jobs": [
            {
                "variant": "profileData50",
                "job": "ftjob-1",
                "status": "succeeded",
                "model": "ft:x",
                "trained_tokens": 781188,
            }
        ],
    }
    page = render_report(_results(), manifest=manifest)
    section = page[page.index('id="details-usage"') : page.index('id="details-protocol"')]

    assert '<tr><th scope="row">prompt tokens</th><td class="num">140,426</td></tr>' in section
    assert (
        '<code>ftjob-1</code></td><td>succeeded</td><td><code>ft:x</code></td><td class="num">781,188</td>'
        in section
    )
    assert "records no cost, token usage or fine-tuning jobs" in render_report(_results(), manifest={})


def test_cost_and_training_curves_come_from_the_manifest() -> None:
    """Estimated vs actual cost and tokens are listed; each reported curve quantity is one line."""
    manifest = {
        **MANIFEST,
        "cost": {
            "currency": "USD",
            "prices_as_of": "2026-12-01",
            "estimated_usd": {"low": 1.5, "expected": 2.25, "worst": 4.0},
            "estimated_tokens": {"expected": 1719716, "worst": 2538294},
            "actual_usd": 2.1,
            "actual_tokens": {"inference": 207579, "training": 1301432},
        },
        "training_curves": [
            {
                "variant": "profileData50",
                "points": [
                    {"step": 1.0, "train_loss": 2.0},
                    {"step": 2.0, "train_loss": 1.5, "valid_loss": 1.7},
                ],
            },
            {"variant": "profileData60", "points": [{"step": 1.0, "valid_hit_rate": 0.4}]},
        ],
    }
    page = render_report(_results(), manifest=manifest)
    section = page[page.index('id="details-usage"') : page.index('id="details-protocol"')]

    assert '<td class="num">1.50 USD / 2.25 USD / 4.00 USD</td>' in section
    assert '<td class="num">2.10 USD</td>' in section
    assert "inference 207,579, training 1,301,432" in section
    from tests.test_report import _plotly_call

    data, _layout = _plotly_call(section[section.index('id="training-chart"') :])
    assert [(t["name"], t["x"], t["y"]) for t in data] == [
        ("profileData50: train loss", [1.0, 2.0], [2.0, 1.5]),
        ("profileData50: validation loss", [2.0], [1.7]),
        ("profileData60: validation hit rate", [1.0], [0.4]),
    ]
    assert 'id="training-chart"' not in render_report(_results(), manifest=MANIFEST)


@pytest.fixture(scope="module")
def demo() -> tuple[Results, dict[str, object], list[Prediction]]:
    """The committed demo's results, manifest and predictions."""
    if not (DEMO / "results.json").is_file():
        pytest.fail("reports/demo/results.json is committed with the repository")
    results = Results.from_dict(json.loads((DEMO / "results.json").read_text(encoding="utf-8")))
    manifest = json.loads((DEMO / "manifest.json").read_text(encoding="utf-8"))
    return results, manifest, list(decode_predictions((DEMO / "predictions.jsonl").read_bytes()))


def test_sections_come_in_order_and_details_are_collapsed(
    demo: tuple[Results, dict[str, object], list[Prediction]],
) -> None:
    """Header, verdict, Figure 2, tables, then the detail sections, each closed until a reader opens it."""
    results, manifest, predictions = demo
    page = render_report(results, manifest=manifest, predictions=predictions)
    order = ["</header>", 'id="verdict"', 'id="figures"', 'id="tables"', 'id="details"', 'id="explorer"']
    tags = re.findall(r"<details\b[^>]*>", page[page.index('id="details"') : page.index('id="explorer"')])

    assert [page.index(x) for x in order] == sorted(page.index(x) for x in order)
    assert [re.search(r'id="([^"]+)"', t).group(1) for t in tags] == [  # type: ignore[union-attr]
        "details-funnel",
        "details-grounding",
        "details-sensitivity",
        "details-beyond",
        "details-comparisons",
        "details-tuning",
        "seeds",
        "details-usage",
        "details-protocol",
    ]
    assert not any(re.search(r"\sopen\b", t) for t in tags)


def test_detail_charts_and_tables_hold_the_results(
    demo: tuple[Results, dict[str, object], list[Prediction]],
) -> None:
    """Funnel, ground-truth sizes and recommended-item popularity are charts of the results' numbers."""
    from tests.test_report import _plotly_call

    results, manifest, _ = demo
    page = render_report(results, manifest=manifest)

    funnel, _ = _plotly_call(page[page.index('id="funnel-chart"') :])
    sizes, _ = _plotly_call(page[page.index('id="ground-truth-chart"') :])
    popularity, layout = _plotly_call(page[page.index('id="popularity-chart"') :])
    for trace, v in zip(funnel, results.variants, strict=True):
        counts = dict(v.counts)
        assert trace["name"] == v.name
        steps = ("eligible_users", "sampled_users", "with_ground_truth", "train_users", "validation_users")
        assert trace["y"] == [float(counts[k]) for k in (*steps, "test_users")]
    for trace, v in zip(sizes, results.variants, strict=True):
        assert v.funnel is not None
        assert trace["y"] == [float(n) for n in v.funnel.ground_truth_sizes]
    for trace, v in zip(popularity, results.variants, strict=True):
        assert trace["y"] == [dict(m.beyond)["popularity_percentile"] for m in v.models if m.role != "ideal"]
        assert "Baseline (zero-shot)" in trace["x"]
    assert layout["yaxis"]["title"]["text"] == "Mean popularity percentile"
    grounding = page[page.index('id="details-grounding"') : page.index('id="details-sensitivity"')]
    assert grounding.count('<table class="details grounding">') == len(results.variants)
    assert "Hallucinated items" in grounding
    beyond = page[page.index('id="details-beyond"') : page.index('id="details-comparisons"')]
    assert beyond.count('<table class="details beyond">') == len(results.variants)
    comparisons = page[page.index('id="details-comparisons"') : page.index('id="details-tuning"')]
    assert comparisons.count('<tr><th scope="row">') == sum(len(v.comparisons) for v in results.variants)


def test_figure2_whiskers_are_the_intervals_and_axes_have_titles() -> None:
    """Each bar's error bar spans its bootstrap interval; both axes are titled; Ideal gets no bar."""
    from llmrec.report import figure2_html
    from tests.test_report import _plotly_call

    data, layout = _plotly_call(figure2_html(_results()))

    assert [t["name"] for t in data] == ["Baseline (zero-shot)", "Fine-tuned", "EASE"]
    for trace in data:
        assert trace["error_y"]["array"] == pytest.approx([0.01, 0.01])
        assert trace["error_y"]["arrayminus"] == pytest.approx([0.01, 0.01])
    assert layout["xaxis"]["title"]["text"] == "Metric"
    assert layout["yaxis"]["title"]["text"] == "Mean score over test users"
    assert layout["legend"]["yref"] == "container"  # below the plot; the toolbar sits above it


def test_protocol_names_the_prompt_hash_and_checks_for_leaks() -> None:
    """The protocol lists exclusions and the prompt hash; a ground-truth movie or title in a prompt shows."""
    clean = [attrs.evolve(p, profile=tuple(range(100, 110)), ground_truth=(p.user,)) for p in _predictions(3)]
    manifest = {**MANIFEST, "prompt_template_hash": "03b373d393794157"}
    page = render_report(_results(), manifest=manifest, predictions=clean)
    protocol = page[page.index('id="details-protocol"') : page.index('id="explorer"')]

    assert "Excluded (profileData50)</th><td>100 sampled users with an empty ground truth" in protocol
    assert "<td>03b373d393794157</td>" in protocol
    assert "no ground-truth movie or title is in any prompt&#39;s profile (3 test users checked)" in protocol
    by_id = [attrs.evolve(clean[0], ground_truth=(100,)), *clean[1:]]
    assert "1 lists have a ground-truth movie in the prompt" in render_report(_results(), predictions=by_id)
    by_title = [
        attrs.evolve(clean[0], ground_truth_titles=(clean[0].profile_titles[3],)),
        *clean[1:],
    ]
    assert "1 lists have a ground-truth title in the prompt" in render_report(
        _results(), predictions=by_title
    )


def test_demo_explorer_scaled_to_1000_test_users_stays_under_two_megabytes(
    demo: tuple[Results, dict[str, object], list[Prediction]],
) -> None:
    """The demo's real explorer bytes per test user, times 1,000, plus its page and tables: under 2 MB."""
    results, manifest, predictions = demo
    files = report_files(results, manifest=manifest, predictions=predictions)
    users = len({(p.variant, p.user) for p in predictions if p.seed == predictions[0].seed})
    explorer = sum(len(v.encode()) for k, v in files.items() if k.startswith("explorer/"))
    rest = sum(len(v.encode()) for k, v in files.items() if k == "index.html" or k.startswith("tables/"))

    assert users > 300
    assert explorer / users * 1000 + rest < 2_000_000, (explorer, users, rest)


def test_the_spec_names_the_paper_table_a_variant_reproduces() -> None:
    """variant.paper_table picks the paper's table whatever the name (0: none); results.json keeps it."""
    named = attrs.evolve(_variant(name="rated-any"), paper_table=2)
    table = metric_table(2, named, NAMES)
    page = render_report(_results(named))

    assert table.paper is not None
    assert table.paper.number == 2
    assert dict(table.rows)["Precision@3"][-1].value == "0.4284"
    assert "the published Table 2 (the spec's variant.paper_table)" in page
    assert metric_table(2, attrs.evolve(_variant(), paper_table=0), NAMES).paper is None
    three = metric_table(3, attrs.evolve(_variant(), paper_table=3), NAMES).paper
    assert three is not None
    assert three.number == 3
    assert "matched by the variant name profileData50" in render_report(_results())
    data = _results(named).to_dict()
    assert data["variants"][0]["paper_table"] == 2
    assert "paper_table" not in _results().to_dict()["variants"][0]  # older files rewrite unchanged
    assert Results.from_dict(data).variants[0].paper_table == 2


class _PageTables(HTMLParser):
    """Each ``<table>`` of a page as rows of cell texts, with the CSV file its download link names."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.files: dict[str, int] = {}
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._depth = 0
        self._links = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "p":
            self._links = "downloads" in (a.get("class") or "").split()
        elif tag == "a" and self._links and (href := a.get("href") or "").endswith(".csv"):
            self.files[href] = len(self.tables) - 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None
        elif tag == "p":
            self._links = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _page_tables(page: str) -> _PageTables:
    parser = _PageTables()
    parser.feed(page)
    return parser


def test_every_table_of_the_demo_page_is_downloadable_as_shown(
    demo: tuple[Results, dict[str, object], list[Prediction]],
) -> None:
    """Each <table> on the page links its CSV and LaTeX from report_files; the files' cells are the page's."""
    results, manifest, predictions = demo
    files = report_files(results, manifest=manifest, predictions=predictions)
    page = files["index.html"]
    parsed = _page_tables(page)
    linked = {index: href for href, index in parsed.files.items() if "/table-" not in href}

    assert sorted(set(parsed.files.values())) == list(range(len(parsed.tables)))  # no table without files
    for href in parsed.files:
        assert href in files, href
        assert href.removesuffix(".csv") + ".tex" in files
        assert f'<a href="{href.removesuffix(".csv")}.tex">' in page
    stems = {t.stem for t in report_tables(results, manifest=manifest, predictions=predictions)}
    assert {h.removeprefix("tables/").removesuffix(".csv") for h in linked.values()} == stems
    for stem in ("profileData50-counts", "profileData50-funnel", "profileData50-grounding", "seeds", "cost"):
        assert stem in stems
    by_stem = {t.stem: t for t in report_tables(results, manifest=manifest, predictions=predictions)}
    for index, href in linked.items():
        table = by_stem[href.removeprefix("tables/").removesuffix(".csv")]
        shown = [r for r in parsed.tables[index] if r and not all(c == "" for c in r)]
        body = shown[-len(table.rows) :]
        if table.stem.endswith("-models"):  # the page prints "fitted on X" under the model id
            assert [[r[0], r[2], r[3]] for r in body] == [
                [e[0].text, e[3].text, e[4].text] for e in table.rows
            ]
            assert [r[1] for r in body] == [
                e[1].text + (f"fitted on {e[2].text}" if e[2].text else "") for e in table.rows
            ]
            continue
        assert body == [[e.text for e in row] for row in table.rows], table.stem
        tex = files[f"tables/{table.stem}.tex"]
        assert "\\toprule" in tex
        assert "\\bottomrule" in tex


def _csv(files: dict[str, str], stem: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(files[f"tables/{stem}.csv"])))


def test_table_csvs_hold_the_numbers_of_results_json(
    demo: tuple[Results, dict[str, object], list[Prediction]],
) -> None:
    """Parsed back, each CSV holds results.json's numbers at full precision (the page shows them rounded)."""
    results, manifest, predictions = demo
    files = report_files(results, manifest=manifest, predictions=predictions)
    data = json.loads((DEMO / "results.json").read_text(encoding="utf-8"))
    checked = 0
    for v in data["variants"]:
        name = v["name"]
        counts = _csv(files, f"{name}-counts")
        assert {r["Count"]: int(r["Users"]) for r in counts} == v["counts"]
        sizes = _csv(files, f"{name}-ground-truth-sizes")
        assert [int(r["Sampled users"]) for r in sizes] == v["funnel"]["ground_truth_sizes"]
        funnel = _csv(files, f"{name}-funnel")
        assert float(funnel[0]["mean"]) == v["funnel"]["neighbor_candidates"]["mean"]
        assert float(funnel[1]["max"]) == v["funnel"]["neighbors_drawn"]["max"]
        llms = [m for m in v["models"] if m.get("grounding")]
        grounding = _csv(files, f"{name}-grounding")
        assert [r["Model"] for r in grounding] == [m["label"] for m in llms]
        for row, m in zip(grounding, llms, strict=True):
            assert float(row["Hallucinated items"]) == m["grounding"]["hallucinated_rate"]
            assert float(row["Parse failures"]) == m["grounding"]["parse_failure_rate"]
        beyond = _csv(files, f"{name}-beyond")
        with_beyond = [m for m in v["models"] if m.get("beyond")]
        for row, m in zip(beyond, with_beyond, strict=True):
            assert float(row["Catalogue coverage"]) == m["beyond"]["coverage"]
            assert float(row["Mean popularity percentile"]) == m["beyond"]["popularity_percentile"]
        sensitivity = _csv(files, f"{name}-sensitivity")
        expected = [
            (m["label"], mode, dict(values)["map"])
            for m in v["models"]
            for mode, values in m["sensitivity"].items()
        ]
        assert [
            (r["Model"], r["Matching"].removesuffix(" (scored)"), float(r["MAP"])) for r in sensitivity
        ] == expected
        comparisons = _csv(files, f"{name}-comparisons")
        assert len(comparisons) == len(v["comparisons"])
        for row, c in zip(comparisons, v["comparisons"], strict=True):
            assert row["Models"] == f"{c['a']} vs {c['b']}"
            assert float(row["Difference"]) == c["difference"]
            assert (float(row["Interval low"]), float(row["Interval high"])) == (c["low"], c["high"])
            assert (float(row["p"]), float(row["Holm p"])) == (c["p_value"], c["p_holm"])
        tuning = _csv(files, f"{name}-tuning")
        assert [float(r["Validation score"]) for r in tuning] == [
            c["score"] for c in v["tuning"]["candidates"]
        ]
        checked += 1
    assert checked == len(results.variants) == 2
    spread = _csv(files, "seeds")
    labels = {"precision@5": "Precision@5", "recall@5": "Recall@5", "mrr": "MRR", "map": "MAP"}
    stds = {(x.variant, x.label, x.metric): x.std for x in results.spread}
    seen = 0
    for x in data["spread"]:
        if x["metric"] not in labels:
            continue
        row = next(r for r in spread if (r["Variant"], r["Model"]) == (x["variant"], x["label"]))
        assert math.isclose(float(row[f"{labels[x['metric']]} mean"]), statistics.fmean(x["values"]))
        assert float(row[f"{labels[x['metric']]} std"]) == stds[(x["variant"], x["label"], x["metric"])]
        seen += 1
    assert seen > 0
    raw: Any = manifest
    jobs = _csv(files, "finetune-jobs")
    assert [int(r["Trained tokens"]) for r in jobs] == [j["trained_tokens"] for j in raw["finetune_jobs"]]
    usage = _csv(files, "usage")
    assert [int(r["Value"]) for r in usage] == list(raw["usage"].values())
    cost = {r["Quantity"]: r["Value"] for r in _csv(files, "cost")}
    assert float(cost["estimated cost expected"]) == raw["cost"]["estimated_usd"]["expected"]
    assert float(cost["actual cost"]) == raw["cost"]["actual_usd"]
    assert int(cost["estimated tokens worst"]) == raw["cost"]["estimated_tokens"]["worst"]
    assert int(cost["actual tokens training"]) == raw["cost"]["actual_tokens"]["training"]


def test_table_latex_escapes_specials_and_markup_and_names_are_file_safe() -> None:
    """&, %, _, #, $ and markup in labels and captions are escaped in LaTeX; file names stay readable."""
    hostile = "A&B_50% #1 $x <b>bold</b>"
    variant = _variant(name="my variant/<x>")
    models = (attrs.evolve(variant.models[0], label=hostile), *variant.models[1:])
    results = attrs.evolve(
        _results(attrs.evolve(variant, models=models)), title=f"<script>{hostile}</script>"
    )
    files = report_files(results, manifest=MANIFEST)
    tex = files["tables/my-variant-x-models.tex"]

    assert r"A\&B\_50\% \#1 \$x \textless{}b\textgreater{}bold\textless{}/b\textgreater{}" in tex
    assert r"\caption{Models - my variant/\textless{}x\textgreater{}}" in tex
    assert "\\label{tab:my-variant-x-models}" in tex
    assert _csv(files, "my-variant-x-models")[0]["Column"] == hostile
    page = files["index.html"]
    assert '<a href="tables/my-variant-x-models.csv">' in page
    assert "A&amp;B_50% #1 $x &lt;b&gt;bold&lt;/b&gt;" in page
    assert file_stem("profileData50", "funnel") == "profileData50-funnel"
    assert file_stem("x", "") == "x"
    assert file_stem("∅") == "table"
    table = DataTable(
        "t", "50% & more_", (DataColumn("a"), DataColumn("b", True)), ((Entry("—"), Entry("±1", (1.0,))),)
    )
    assert data_table_csv(table) == "a,b\n—,1.0\n"
    assert data_table_latex(table).splitlines()[3:10] == [
        r"\caption{50\% \& more\_}",
        r"\label{tab:t}",
        r"\begin{tabular}{lr}",
        r"\toprule",
        r"a & b \\",
        r"\midrule",
        r"--- & $\pm$1 \\",
    ]


def test_two_variants_with_the_same_file_name_get_numbered_stems() -> None:
    """Variant names cleaning up to one stem fall back to their table numbers; nothing is overwritten."""
    results = _results(_variant(name="a b"), _variant(name="a/b"))
    files = report_files(results)

    assert "tables/variant-2-counts.csv" in files
    assert "tables/variant-3-counts.csv" in files
    assert report_files(results) == files
