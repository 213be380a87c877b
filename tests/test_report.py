"""
Tests for llmrec.report: the Table 2/3 and Figure 2 page rendered from hand-built ``Results``.

The golden file ``tests/data/reports/minimal.html`` is the expected page for ``_minimal_results()``
and ``_MINIMAL_MANIFEST``. After a deliberate change to the page (or a plotly upgrade, whose JSON
the figure embeds) regenerate it with::

    LLMREC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_report.py -k golden

and review the diff before committing it.
"""

from __future__ import annotations

import json
import math
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import pytest

import llmrec.report
import llmrec.report.charts
from llmrec.report import figure2_html, render_report, report_assets
from llmrec.results import ModelScores, Results, VariantResults

GOLDEN = Path(__file__).parent / "data" / "reports" / "minimal.html"

NAMES = ("precision@3", "recall@3", "f1@3", "precision@5", "recall@5", "f1@5", "mrr", "map")
LABELS = ("Precision@3", "Recall@3", "F1@3", "Precision@5", "Recall@5", "F1@5", "MRR", "MAP")

# The paper's Tables 2 and 3 (baseline, fine-tuned), in NAMES order.
PAPER = {
    "profileData50": (
        (0.0198, 0.0063, 0.0095, 0.0208, 0.0117, 0.0146, 0.0505, 0.0060),
        (0.4284, 0.1404, 0.2075, 0.4268, 0.2339, 0.2951, 0.5981, 0.2780),
    ),
    "profileData60": (
        (0.0116, 0.0083, 0.0089, 0.0125, 0.0155, 0.0127, 0.0357, 0.0088),
        (0.4184, 0.2509, 0.2833, 0.4182, 0.3625, 0.3476, 0.5526, 0.3009),
    ),
}

_MINIMAL_MANIFEST = {
    "spec_text": 'name = "minimal"\n\n[sampling]\nusers = 20\n',
    "started_at": "2025-01-01T00:00:00Z",
    "versions": {"llmrec": "0.1.0", "python": "3.11"},
}


def _variant(name: str, threshold: float) -> VariantResults:
    baseline, finetuned = PAPER[name]
    return VariantResults(
        name=name,
        sampling=(("users", 10000), ("watch_threshold", threshold), ("seed", 7)),
        counts=(("users_sampled", 10000), ("users_train", 8000), ("users_test", 2000)),
        models=(
            ModelScores(
                role="baseline",
                label="Baseline",
                model="gpt-4o-mini-2024-07-18",
                users=2000,
                parse_failures=3,
                metrics=tuple(zip(NAMES, baseline, strict=True)),
            ),
            ModelScores(
                role="finetuned",
                label="Fine-tuned",
                model=f"ft:gpt-4o-mini-2024-07-18:lab::{name}",
                users=1998,
                parse_failures=0,
                metrics=tuple(zip(NAMES, finetuned, strict=True)),
            ),
        ),
    )


def _results(title: str = "LLMs as movie recommenders") -> Results:
    return Results(
        experiment="netflix-paper",
        title=title,
        metric_names=NAMES,
        variants=(_variant("profileData50", 0.5), _variant("profileData60", 0.6)),
    )


def _minimal_results() -> Results:
    names = ("precision@3", "recall@3", "mrr")
    return Results(
        experiment="minimal",
        title="Minimal report",
        metric_names=names,
        variants=(
            VariantResults(
                name="profileData50",
                sampling=(("users", 20), ("watch_threshold", 0.5)),
                counts=(("users_train", 16), ("users_test", 4)),
                models=(
                    ModelScores(
                        "baseline",
                        "Baseline",
                        "fake-base",
                        4,
                        1,
                        tuple(zip(names, (0.25, 0.125, 0.5), strict=True)),
                    ),
                    ModelScores(
                        "finetuned",
                        "Fine-tuned",
                        "fake-tuned",
                        4,
                        0,
                        tuple(zip(names, (0.75, 0.5, 1.0), strict=True)),
                    ),
                ),
            ),
        ),
    )


@attrs.define
class _Table:
    caption: str = ""
    rows: list[list[str]] = attrs.Factory(list)


class _PageParser(HTMLParser):
    """
    Collects the tables (caption and cell texts per row) and the script/link URLs of a page.

    A cell's text leaves out its ``<small>`` and ``<sup>`` parts (subtitles, intervals, differences,
    significance letters): the cell's main value only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[_Table] = []
        self.urls: list[tuple[str, str]] = []
        self._cell: list[str] | None = None
        self._in_caption = False
        self._aside = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("small", "sup"):
            self._aside += 1
        if tag == "script" and values.get("src") is not None:
            self.urls.append((tag, values["src"] or ""))
        if tag == "link" and values.get("href") is not None:
            self.urls.append((tag, values["href"] or ""))
        if tag == "table":
            self.tables.append(_Table())
        elif tag == "caption":
            self._in_caption = True
        elif tag == "tr":
            self.tables[-1].rows.append([])
        elif tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("small", "sup"):
            self._aside -= 1
        if tag == "caption":
            self._in_caption = False
        elif tag in ("th", "td") and self._cell is not None:
            self.tables[-1].rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self.tables[-1].caption += data
        elif self._cell is not None and not self._aside:
            self._cell.append(data)


def _parse(page: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    return parser


def _metric_tables(page: str) -> list[_Table]:
    return [t for t in _parse(page).tables if t.caption]


def _details(page: str, header: str) -> list[dict[str, str]]:
    """
    The two-column detail tables (counts, sampling) of each variant whose first key is ``header``.
    """
    return [
        dict((r[0], r[1]) for r in t.rows) for t in _parse(page).tables if t.rows and t.rows[0][0] == header
    ]


def _plotly_call(fragment: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """
    The data and layout arguments of the ``Plotly.newPlot`` call in a figure fragment.
    """
    decoder = json.JSONDecoder()
    start = fragment.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    values = []
    position = start
    for _ in range(3):
        while fragment[position] in " \t\n,":
            position += 1
        value, position = decoder.raw_decode(fragment, position)
        values.append(value)
    _div_id, data, layout = values
    return data, layout


def test_one_table_per_variant_with_paper_caption() -> None:
    """Each variant gets a table captioned as in the paper, numbered from Table 2 in variant order."""
    tables = _metric_tables(render_report(_results()))

    assert [t.caption for t in tables] == [
        f"Table {n}: Comparison of performance metrics between the baseline and fine-tuned models - {name}"
        for n, name in ((2, "profileData50"), (3, "profileData60"))
    ]


def test_table_columns_are_model_labels_in_order() -> None:
    """The header row is the metric column, one column per model (its label), then the paper's two columns."""
    tables = _metric_tables(render_report(_results()))

    assert [t.rows[0] for t in tables] == [
        ["Metric", "Baseline", "Fine-tuned", "Paper Baseline", "Paper Fine-tuned"]
    ] * 2


def test_table_rows_are_metric_labels_with_four_decimals() -> None:
    """Every metric is a row, in metric_names order, with each model's value to four decimals."""
    tables = _metric_tables(render_report(_results()))

    for table, (baseline, finetuned) in zip(tables, PAPER.values(), strict=True):
        expected = [
            [label, f"{b:.4f}", f"{f:.4f}", f"{b:.4f}", f"{f:.4f}"]
            for label, b, f in zip(LABELS, baseline, finetuned, strict=True)
        ]
        assert table.rows[1:] == expected
    assert tables[0].rows[1] == ["Precision@3", "0.0198", "0.4284", "0.0198", "0.4284"]
    assert tables[1].rows[-1] == ["MAP", "0.0088", "0.3009", "0.0088", "0.3009"]


def test_missing_metric_is_a_dash_and_nan_is_na() -> None:
    """A metric a model lacks shows a dash and an undefined (NaN) mean shows n/a, instead of failing."""
    results = _results()
    variant = results.variants[0]
    baseline = attrs.evolve(variant.models[0], metrics=variant.models[0].metrics[1:])
    finetuned = attrs.evolve(
        variant.models[1], metrics=(("precision@3", math.nan), *variant.models[1].metrics[1:])
    )
    results = attrs.evolve(results, variants=(attrs.evolve(variant, models=(baseline, finetuned)),))

    table = _metric_tables(render_report(results))[0]

    assert table.rows[1] == ["Precision@3", "—", "n/a", "0.0198", "0.4284"]


def test_counts_sampling_and_models_shown_under_each_table() -> None:
    """Under each table come the variant's counts, sampling settings and each model's id, users, failures."""
    page = render_report(_results())
    models = [t.rows for t in _parse(page).tables if t.rows and t.rows[0][0] == "Column"]

    assert (
        _details(page, "users_sampled")
        == [{"users_sampled": "10,000", "users_train": "8,000", "users_test": "2,000"}] * 2
    )
    assert _details(page, "users") == [
        {"users": "10000", "watch_threshold": "0.5", "seed": "7"},
        {"users": "10000", "watch_threshold": "0.6", "seed": "7"},
    ]
    assert models[0] == [
        ["Column", "Model", "Scored users", "Parse failures"],
        ["Baseline", "gpt-4o-mini-2024-07-18", "2,000", "3"],
        ["Fine-tuned", "ft:gpt-4o-mini-2024-07-18:lab::profileData50", "1,998", "0"],
    ]
    assert models[1][2][1] == "ft:gpt-4o-mini-2024-07-18:lab::profileData60"


def test_page_shows_title_and_experiment() -> None:
    """The page's title and heading carry the results title, and the experiment name is shown."""
    page = render_report(_results())

    assert "<title>LLMs as movie recommenders · netflix-paper</title>" in page
    assert "<h1>LLMs as movie recommenders</h1>" in page
    assert "<code>netflix-paper</code>" in page


def test_figure2_has_one_panel_per_variant_with_both_models() -> None:
    """Figure 2 holds a baseline and a fine-tuned bar trace per variant, each on its variant's panel."""
    page = render_report(_results())
    data, layout = _plotly_call(page[page.index('id="figure-2"') :])

    assert [(t["type"], t["name"], t["xaxis"]) for t in data] == [
        ("bar", "Baseline (zero-shot)", "x"),
        ("bar", "Fine-tuned", "x"),
        ("bar", "Baseline (zero-shot)", "x2"),
        ("bar", "Fine-tuned", "x2"),
    ]
    assert [a["text"] for a in layout["annotations"]] == ["profileData50", "profileData60"]
    assert layout["barmode"] == "group"
    assert "Figure 2: Precision, Recall and F1 @ K scores for K = {3, 5}" in page


def test_figure2_bars_are_the_at_k_metrics() -> None:
    """Each trace plots Precision, Recall and F1 at every K (not MRR or MAP) with the model's values."""
    data, _layout = _plotly_call(figure2_html(_results()))

    assert all(t["x"] == list(LABELS[:6]) for t in data)
    assert data[0]["y"] == list(PAPER["profileData50"][0][:6])
    assert data[1]["y"] == list(PAPER["profileData50"][1][:6])
    assert data[2]["y"] == list(PAPER["profileData60"][0][:6])
    assert data[3]["y"] == list(PAPER["profileData60"][1][:6])


def test_figure2_legend_lists_each_model_once() -> None:
    """Panels share one legend: only the first panel's traces show a legend entry."""
    data, _layout = _plotly_call(figure2_html(_results()))

    assert [t["showlegend"] for t in data] == [True, True, False, False]
    assert data[0]["marker"]["color"] == data[2]["marker"]["color"] != data[1]["marker"]["color"]


def test_figure2_fragment_leaves_plotlyjs_out() -> None:
    """The figure is a div fragment with a fixed id and without plotly.js or a page around it."""
    fragment = figure2_html(_results())

    assert fragment.startswith("<div")
    assert '<div id="figure-2" class="plotly-graph-div"' in fragment
    assert "<html" not in fragment
    assert "<script src" not in fragment
    assert len(fragment) < 50_000


def test_figure2_wraps_panels_beyond_two_variants() -> None:
    """Three variants give Tables 2 to 4 and three figure panels laid out on two rows."""
    results = _results()
    third = attrs.evolve(results.variants[0], name="profileData70")
    page = render_report(attrs.evolve(results, variants=(*results.variants, third)))
    data, layout = _plotly_call(page[page.index('id="figure-2"') :])
    _data, one_row = _plotly_call(figure2_html(results))

    assert [t.caption[:8] for t in _metric_tables(page)] == ["Table 2:", "Table 3:", "Table 4:"]
    assert [t["xaxis"] for t in data] == ["x", "x", "x2", "x2", "x3", "x3"]
    assert layout["height"] - one_row["height"] == llmrec.report.charts._PANEL_HEIGHT
    assert [a["text"] for a in layout["annotations"]] == ["profileData50", "profileData60", "profileData70"]


def test_figure2_without_at_k_metrics_is_empty() -> None:
    """With no @K metric there is nothing to plot: the fragment is empty and the page says so."""
    results = attrs.evolve(_results(), metric_names=("mrr", "map"))
    page = render_report(results)

    assert figure2_html(results) == ""
    assert "No @K metrics to plot." in page
    assert "Plotly.newPlot" not in page


def test_page_loads_no_remote_scripts_or_styles() -> None:
    """The page loads plotly.js from the sibling file only, and no script or stylesheet from http(s)."""
    page = render_report(_results(), manifest=_MINIMAL_MANIFEST)
    urls = _parse(page).urls

    assert urls == [("script", "plotly.min.js")]
    assert not any(url.startswith(("http://", "https://", "//")) for _tag, url in urls)
    assert "cdn" not in page.lower()


def test_render_is_deterministic() -> None:
    """Rendering the same results and manifest twice gives byte-identical pages."""
    first = render_report(_results(), manifest=_MINIMAL_MANIFEST)
    second = render_report(_results(), manifest=dict(_MINIMAL_MANIFEST))

    assert first == second
    assert figure2_html(_results()) == figure2_html(_results())


def test_title_is_html_escaped() -> None:
    """A title holding markup is shown as text, never injected into the page."""
    page = render_report(_results(title="<script>alert('x')</script> & co"))

    assert "<script>alert" not in page
    assert "<h1>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</h1>" in page


def test_variant_name_cannot_break_out_of_the_figure_script() -> None:
    """A variant name holding a closing script tag stays escaped both in the tables and in the figure JSON."""
    results = _results()
    evil = "</script><script>alert(1)</script>"
    results = attrs.evolve(results, variants=(attrs.evolve(results.variants[0], name=evil),))
    page = render_report(results)
    _data, layout = _plotly_call(page[page.index('id="figure-2"') :])

    assert "<script>alert(1)" not in page
    assert _metric_tables(page)[0].caption.endswith(" - " + evil)
    assert layout["annotations"][0]["text"] == "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"


def test_manifest_spec_text_is_shown_escaped() -> None:
    """The manifest's spec text is shown verbatim in the Reproduce section, with markup escaped."""
    spec = 'name = "<b>bold</b> & more"\n[sampling]\nusers = 20\n'
    page = render_report(_results(), manifest={"spec_text": spec})
    reproduce = page[page.index('<section id="reproduce">') :]

    escaped = "name = &#34;&lt;b&gt;bold&lt;/b&gt; &amp; more&#34;\n[sampling]\nusers = 20\n"
    assert f'<pre class="spec">{escaped}</pre>' in reproduce
    assert "<b>bold</b>" not in page


def test_manifest_entries_are_listed_flattened() -> None:
    """Every other manifest entry is listed, nested mappings under dotted keys, in the manifest's order."""
    manifest = {
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": None,
        "versions": {"llmrec": "0.1.0", "plotly": "7.1.0"},
        "seeds": [1, 2],
        "retries": 2,
    }
    page = render_report(_results(), manifest=manifest)
    rows = next(t.rows for t in _parse(page).tables if t.rows and t.rows[0][0] == "started_at")

    assert rows == [
        ["started_at", "2025-01-01T00:00:00Z"],
        ["finished_at", "null"],
        ["versions.llmrec", "0.1.0"],
        ["versions.plotly", "7.1.0"],
        ["seeds", "1, 2"],
        ["retries", "2"],
    ]
    assert "The manifest holds no spec text." in page


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (None, "No run manifest was given"),
        ({}, "The manifest holds no spec text."),
        ({"versions": {}}, "versions"),
    ],
)
def test_reproduce_section_tolerates_missing_manifest_keys(
    manifest: dict[str, Any] | None, expected: str
) -> None:
    """A missing, empty or sparse manifest still renders a Reproduce section that says what is known."""
    page = render_report(_results(), manifest=manifest)
    reproduce = page[page.index('<section id="reproduce">') :]

    assert expected in reproduce
    assert '<pre class="spec">' not in reproduce


def test_report_assets_is_the_plotly_bundle() -> None:
    """The only asset is plotly.js under the name the page loads it from."""
    assets = report_assets()

    assert list(assets) == ["plotly.min.js"]
    assert len(assets["plotly.min.js"]) > 1_000_000
    assert "Plotly" in assets["plotly.min.js"][:100_000]


def test_public_api() -> None:
    """The report package exports the renderers (page, folder, index), the assets and the Figure 2 chart."""
    assert sorted(llmrec.report.__all__) == [
        "RunSummary",
        "figure2_html",
        "render_index",
        "render_report",
        "report_assets",
        "report_files",
    ]


def test_minimal_report_matches_golden_file() -> None:
    """A small fixed Results renders exactly the page in tests/data/reports/minimal.html."""
    page = render_report(_minimal_results(), manifest=_MINIMAL_MANIFEST)
    if os.environ.get("LLMREC_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(page, encoding="utf-8")

    assert page == GOLDEN.read_text(encoding="utf-8")


def test_funnel_is_shown_when_present():
    """A variant with a funnel shows neighbour statistics, the mean ground-truth size and the histogram."""
    import attrs

    from llmrec.results import Funnel

    stats = (("min", 2.0), ("p25", 10.0), ("median", 40.0), ("mean", 55.5), ("p75", 80.0), ("max", 300.0))
    funnel = Funnel(neighbor_candidates=stats, neighbors_drawn=stats, ground_truth_sizes=(5, 0, 2, 0, 3))
    results = _results()
    variants = (attrs.evolve(results.variants[0], funnel=funnel), results.variants[1])
    html = render_report(attrs.evolve(results, variants=variants))

    assert html.count("<h4>Funnel</h4>") == 1
    assert "2 / 40 / 55.5 / 300" in html
    assert "mean ground-truth size (kept users)" in html
    assert "3.20" in html  # (2*2 + 4*3) / 5 kept users
    assert "0 (dropped)" in html
