"""
The HTML report: a pure function from ``Results`` (and optionally the run manifest) to a page string.

Nothing here reads files the caller names, the environment, the clock or the network; the template
ships inside the package. ``cli.py`` writes the page and the assets from ``report_assets`` beside it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import jinja2
import plotly.offline
from markupsafe import Markup

from llmrec.report.charts import (
    FIGURE2_DIV_ID,
    display_label,
    figure2_html,
    funnel_html,
    ground_truth_sizes_html,
    popularity_html,
    training_curves_html,
)
from llmrec.report.explorer import explorer_files, explorer_names, explorer_note, script_json
from llmrec.report.tables import (
    ALPHA,
    CsvValue,
    DataColumn,
    DataTable,
    Entry,
    MetricTable,
    data_table_csv,
    data_table_latex,
    file_stem,
    letters_of,
    metric_table,
    table_csv,
    table_latex,
)
from llmrec.results import Funnel, ModelScores, Prediction, Results, VariantResults, metric_label

__all__ = [
    "PLOTLY_JS",
    "RunSummary",
    "render_index",
    "render_report",
    "report_assets",
    "report_files",
    "report_tables",
]

PLOTLY_JS = "plotly.min.js"
"""The file name the page loads plotly.js from, relative to the page itself."""

_FIRST_TABLE = 2  # the paper's results tables are Table 2 (profileData50) and Table 3 (profileData60)
_MISSING = "—"
_HEADLINE = ("precision@5", "recall@5", "mrr", "map")


@attrs.frozen
class _VariantView:
    """
    One variant's part of the page, formatted for the template.
    """

    number: int
    name: str
    table: MetricTable
    letters: tuple[tuple[str, str], ...]
    verdict: tuple[str, ...]
    too_small: bool
    test_users: int
    min_test_users: int | None
    counts: tuple[tuple[str, str], ...]
    sampling: tuple[tuple[str, str], ...]
    models: tuple[ModelScores, ...]
    funnel: tuple[tuple[str, str], ...]
    ground_truth_sizes: tuple[tuple[str, str], ...]
    grounding: tuple[tuple[str, tuple[str, ...]], ...]
    """(model label, formatted rates in ``_GROUNDING`` order) for the LLM columns."""
    sensitivity_headers: tuple[str, ...]
    sensitivity: tuple[tuple[str, str, tuple[str, ...]], ...]
    """(model label, matching mode, formatted metric values) for the LLM columns."""
    beyond: tuple[tuple[str, str, str], ...]
    """(model label, coverage, popularity percentile)."""
    comparisons: tuple[tuple[str, str, str, str, str, str, str], ...]
    """(pair, metric, difference, interval, p, Holm p, verdict) per row."""
    confidence: str
    csv_file: str
    tex_file: str
    holm_family: str = "across the metric rows of each pair"
    """How Holm's correction was applied, as caption text."""
    popularity: str = ""
    """How much of the ground truth is plain popularity, as one sentence ("" when unknown)."""
    protocol: str = ""
    """The evaluation protocol and, for the global temporal one, its cut date, as one sentence."""
    reference: str = ""
    """Which classic baseline the LLMs are compared with and how it was chosen, as one sentence."""
    tuning: tuple[tuple[str, str, str, str], ...] = ()
    """(baseline, setting, validation score, "chosen" / "") per candidate of the validation tuning."""
    tuning_note: str = ""
    """How the candidates were fitted and scored, as caption text."""
    paper_by_spec: bool = False
    """Whether the spec named the paper table (``variant.paper_table``) rather than the variant's name."""
    stem: str = ""
    """The start of this variant's table file names (its name, made file-safe)."""


def render_report(
    results: Results,
    *,
    manifest: Mapping[str, Any] | None = None,
    predictions: Sequence[Prediction] = (),
) -> str:
    """
    Render the experiment's report as one static HTML page.

    The page opens with a header (experiment, date, dataset, provider and models, spec hash) and
    warnings (a simulated provider, too few test users), then per variant a verdict drawn from the
    numbers, Figure 2, Tables 2/3 (numbered from Table 2, as in the paper) with significance letters
    and the paper's published values where the variant's name matches one, collapsed detail sections,
    the per-user explorer (when ``predictions`` are given; its data files come from ``report_files``),
    downloads and the manifest. ``results.json`` is embedded. It loads plotly.js from the sibling file
    ``plotly.min.js`` and from nowhere else.

    Args:
        results: the scored experiment.
        manifest: the run's ``manifest.json`` content (spec text, versions, timestamps), if known;
            any keys may be missing.
        predictions: the scored lists (``predictions.jsonl``) for the explorer; none: no explorer.

    Returns:
        The page; the same arguments always give the same string.
    """
    template = _environment().get_template("report.html.j2")
    spec_text, details = _manifest_view(manifest)
    variants = _variant_views(results)
    explorer = explorer_names(predictions)
    tables = _data_tables(results, variants, manifest, predictions)
    return template.render(
        title=results.title,
        experiment=results.experiment,
        schema_version=results.schema_version,
        header=_header(results, manifest),
        simulated=_simulated(manifest),
        small=tuple(v for v in variants if v.too_small),
        variants=variants,
        figure_number=_FIRST_TABLE,
        ks=_ks(results.metric_names),
        figure=Markup(figure2_html(results)),
        figure_id=FIGURE2_DIV_ID,
        funnel_chart=Markup(funnel_html(results)),
        sizes_chart=Markup(ground_truth_sizes_html(results)),
        popularity_chart=Markup(popularity_html(results)),
        plotly_js=PLOTLY_JS,
        has_manifest=manifest is not None,
        spec_text=spec_text,
        manifest_items=details,
        grounding_headers=_GROUNDING,
        seeds=", ".join(str(x) for x in results.seeds),
        spread_headers=tuple(metric_label(n) for n in _sensitivity_metrics(results.metric_names)),
        spread=_spread_rows(results),
        protocol=_protocol(results, manifest, predictions),
        usage=_usage(manifest),
        cost=_cost(manifest),
        training_chart=Markup(training_curves_html(manifest)),
        jobs=_jobs(manifest),
        explorer_scripts=explorer,
        explorer_note=explorer_note(predictions),
        alpha=ALPHA,
        table_files={t.stem: t.caption for t in tables},
        results_json=Markup(script_json(_finite(results.to_dict()))),
    )


def report_assets() -> dict[str, str]:
    """
    The files the page needs beside it, by file name: only plotly.js, so it opens offline.

    Returns:
        ``{"plotly.min.js": <the plotly.js bundle shipped with the installed plotly>}``.
    """
    return {PLOTLY_JS: plotly.offline.get_plotlyjs()}


def report_files(
    results: Results,
    *,
    manifest: Mapping[str, Any] | None = None,
    predictions: Sequence[Prediction] = (),
) -> dict[str, str]:
    """
    Every file of a report folder except results.json, predictions.jsonl and manifest.json (the caller's):
    ``index.html``, plotly.js, the explorer's data scripts and each table as CSV and LaTeX.
    """
    files: dict[str, str] = {"index.html": render_report(results, manifest=manifest, predictions=predictions)}
    files.update(report_assets())
    files.update(explorer_files(predictions))
    for i, variant in enumerate(results.variants):
        table = metric_table(i + _FIRST_TABLE, variant, results.metric_names)
        files[_table_file(table.number, "csv")] = table_csv(table)
        files[_table_file(table.number, "tex")] = table_latex(table)
    for data in report_tables(results, manifest=manifest, predictions=predictions):
        files[f"tables/{data.stem}.csv"] = data_table_csv(data)
        files[f"tables/{data.stem}.tex"] = data_table_latex(data)
    return files


def report_tables(
    results: Results,
    *,
    manifest: Mapping[str, Any] | None = None,
    predictions: Sequence[Prediction] = (),
) -> tuple[DataTable, ...]:
    """
    Every table of the page besides Tables 2-3, as the page shows it (cell texts) with the full-precision
    numbers behind each cell (for the CSV): per variant its models, counts, sampling settings, funnel,
    ground-truth sizes, grounding rates, title-matching sensitivity, beyond-accuracy, paired comparisons
    and baseline tuning; then the spread across seeds, cost, token usage, fine-tune jobs, protocol and
    manifest. A table the page does not show (no data) is left out. ``tables/<stem>.csv`` and
    ``.tex`` hold each one.
    """
    return _data_tables(results, _variant_views(results), manifest, predictions)


def _variant_views(results: Results) -> tuple[_VariantView, ...]:
    stems = [file_stem(v.name) for v in results.variants]
    views = []
    for i, v in enumerate(results.variants):
        stem = stems[i] if stems.count(stems[i]) == 1 else f"variant-{i + _FIRST_TABLE}"
        views.append(attrs.evolve(_variant_view(i + _FIRST_TABLE, v, results), stem=stem))
    return tuple(views)


def _num(text: str, value: CsvValue) -> Entry:
    return Entry(text, (value,))


def _data_tables(
    results: Results,
    views: Sequence[_VariantView],
    manifest: Mapping[str, Any] | None,
    predictions: Sequence[Prediction],
) -> tuple[DataTable, ...]:
    """
    The page's other tables (see ``report_tables``), built from the same texts the template shows.
    """
    out: list[DataTable] = []
    for view, variant in zip(views, results.variants, strict=True):
        out += _variant_tables(view, variant, results)
    shown = _sensitivity_metrics(results.metric_names)
    spread = {(x.variant, x.label, x.metric): x for x in results.spread}
    rows = _spread_rows(results)
    if rows:
        out.append(
            DataTable(
                "seeds",
                "Across seeds: mean ± standard deviation of each model's metric over seeds "
                + ", ".join(str(x) for x in results.seeds),
                (
                    DataColumn("Variant"),
                    DataColumn("Model"),
                    *(
                        DataColumn(
                            metric_label(n), True, (f"{metric_label(n)} mean", f"{metric_label(n)} std")
                        )
                        for n in shown
                    ),
                ),
                tuple(
                    (
                        Entry(variant),
                        Entry(label),
                        *(
                            Entry(text, (x.mean, x.std) if (x := spread.get((variant, label, n))) else ())
                            for text, n in zip(values, shown, strict=True)
                        ),
                    )
                    for variant, label, values in rows
                ),
            )
        )
    pairs = (
        ("cost", "Estimated and actual cost", _cost(manifest)),
        ("usage", "Tokens used by inference", _usage(manifest)),
    )
    usage = (manifest or {}).get("usage")
    for stem, caption, items in pairs:
        if not items:
            continue
        raw = list(usage.values()) if stem == "usage" and isinstance(usage, Mapping) else []
        tidy = _cost_csv((manifest or {}).get("cost")) if stem == "cost" else ()
        out.append(
            DataTable(
                stem,
                caption,
                (DataColumn("Item"), DataColumn("Value", True)),
                tuple(
                    (Entry(k), _num(v, raw[i]) if i < len(raw) else Entry(v))
                    for i, (k, v) in enumerate(items)
                ),
                csv_header=("Quantity", "Value", "Unit") if tidy else (),
                csv_rows=tidy,
            )
        )
    jobs = _jobs(manifest)
    if jobs:
        raw_jobs = [j for j in (manifest or {}).get("finetune_jobs", []) if isinstance(j, Mapping)]
        out.append(
            DataTable(
                "finetune-jobs",
                "Fine-tuning jobs",
                (
                    DataColumn("Variant"),
                    DataColumn("Job"),
                    DataColumn("Status"),
                    DataColumn("Model"),
                    DataColumn("Trained tokens", True),
                ),
                tuple(
                    (*(Entry(x) for x in row[:4]), _num(row[4], j.get("trained_tokens")))
                    for row, j in zip(jobs, raw_jobs, strict=True)
                ),
            )
        )
    protocol = _protocol(results, manifest, predictions)
    out.append(
        DataTable(
            "protocol",
            "Protocol",
            (DataColumn("Item"), DataColumn("Description")),
            tuple((Entry(k), Entry(v)) for k, v in protocol),
        )
    )
    _, details = _manifest_view(manifest)
    if details:
        out.append(
            DataTable(
                "manifest",
                "Run manifest",
                (DataColumn("Key"), DataColumn("Value")),
                tuple((Entry(k), Entry(v)) for k, v in details),
            )
        )
    return tuple(out)


def _variant_tables(view: _VariantView, variant: VariantResults, results: Results) -> list[DataTable]:
    """
    One variant's tables besides its Table 2/3, in page order.
    """
    s, name = view.stem, variant.name
    out = [
        DataTable(
            f"{s}-models",
            f"Models - {name}",
            (
                DataColumn("Column"),
                DataColumn("Model"),
                DataColumn("Fitted on"),
                DataColumn("Scored users", True),
                DataColumn("Parse failures", True),
            ),
            tuple(
                (
                    Entry(m.label),
                    Entry(m.model),
                    Entry(m.source or ""),
                    _num(f"{m.users:,}", m.users),
                    _num(f"{m.parse_failures:,}", m.parse_failures),
                )
                for m in variant.models
            ),
        )
    ]
    if view.counts:
        out.append(
            DataTable(
                f"{s}-counts",
                f"Counts (the sampling funnel) - {name}",
                (DataColumn("Count"), DataColumn("Users", True)),
                tuple(
                    (Entry(k), _num(text, value))
                    for (k, text), (_, value) in zip(view.counts, variant.counts, strict=True)
                ),
            )
        )
    if view.sampling:
        out.append(
            DataTable(
                f"{s}-sampling",
                f"Sampling settings - {name}",
                (DataColumn("Setting"), DataColumn("Value", True)),
                tuple(
                    (Entry(k), _num(text, value) if isinstance(value, int | float | str) else Entry(text))
                    for (k, text), (_, value) in zip(view.sampling, variant.sampling, strict=True)
                ),
            )
        )
    funnel = variant.funnel
    if funnel is not None:
        stats = ("min", "median", "mean", "max")
        raw = (
            tuple(dict(funnel.neighbor_candidates).get(k) for k in stats),
            tuple(dict(funnel.neighbors_drawn).get(k) for k in stats),
            (None, None, funnel.mean_ground_truth_size, None),
        )
        out.append(
            DataTable(
                f"{s}-funnel",
                f"Funnel: neighbour statistics and mean ground-truth size - {name}",
                (DataColumn("Statistic"), DataColumn("Value", True, stats)),
                tuple((Entry(k), Entry(text, r)) for (k, text), r in zip(view.funnel, raw, strict=True)),
            )
        )
        out.append(
            DataTable(
                f"{s}-ground-truth-sizes",
                f"Sampled users per ground-truth size (size 0: dropped) - {name}",
                (DataColumn("Ground-truth size", True), DataColumn("Sampled users", True)),
                tuple(
                    (
                        Entry(size + (" (dropped)" if size == "0" else ""), (int(size),)),
                        _num(users, funnel.ground_truth_sizes[int(size)]),
                    )
                    for size, users in view.ground_truth_sizes
                ),
            )
        )
    grounded = [m for m in variant.models if m.grounding]
    if grounded:
        out.append(
            DataTable(
                f"{s}-grounding",
                f"Grounding and hallucination rates (shares; the CSV holds fractions) - {name}",
                (DataColumn("Model"), *(DataColumn(h, True) for _, h in _GROUNDING)),
                tuple(
                    (
                        Entry(label),
                        *(
                            _num(text, dict(m.grounding).get(key))
                            for text, (key, _) in zip(rates, _GROUNDING, strict=True)
                        ),
                    )
                    for (label, rates), m in zip(view.grounding, grounded, strict=True)
                ),
            )
        )
    shown = _sensitivity_metrics(results.metric_names)
    if view.sensitivity:
        raw_sens = [dict(values) for m in variant.models for _, values in m.sensitivity]
        out.append(
            DataTable(
                f"{s}-sensitivity",
                f"Title-matching sensitivity - {name}",
                (
                    DataColumn("Model"),
                    DataColumn("Matching"),
                    *(DataColumn(h, True) for h in view.sensitivity_headers),
                ),
                tuple(
                    (
                        Entry(label),
                        Entry(mode),
                        *(_num(text, r.get(n)) for text, n in zip(values, shown, strict=True)),
                    )
                    for (label, mode, values), r in zip(view.sensitivity, raw_sens, strict=True)
                ),
            )
        )
    beyond = [m for m in variant.models if m.beyond]
    if beyond:
        out.append(
            DataTable(
                f"{s}-beyond",
                "Beyond accuracy: catalogue coverage (the CSV holds a fraction) and mean popularity "
                f"percentile - {name}",
                (
                    DataColumn("Model"),
                    DataColumn("Catalogue coverage", True),
                    DataColumn("Mean popularity percentile", True),
                ),
                tuple(
                    (
                        Entry(label),
                        _num(coverage, dict(m.beyond).get("coverage")),
                        _num(popularity, dict(m.beyond).get("popularity_percentile")),
                    )
                    for (label, coverage, popularity), m in zip(view.beyond, beyond, strict=True)
                ),
            )
        )
    if view.comparisons:
        out.append(
            DataTable(
                f"{s}-comparisons",
                f"Paired comparisons ({view.confidence} bootstrap intervals, sign-flip permutation p, "
                f"Holm-adjusted {view.holm_family}) - {name}",
                (
                    DataColumn("Models"),
                    DataColumn("Metric"),
                    DataColumn("Difference", True),
                    DataColumn("Interval", True, ("Interval low", "Interval high")),
                    DataColumn("p", True),
                    DataColumn("Holm p", True),
                    DataColumn(f"Verdict (Holm p < {ALPHA})"),
                ),
                tuple(
                    (
                        Entry(pair),
                        Entry(metric),
                        _num(diff, c.difference),
                        Entry(interval, (c.low, c.high)),
                        _num(p, c.p_value),
                        _num(holm_p, c.p_holm),
                        Entry(verdict),
                    )
                    for (pair, metric, diff, interval, p, holm_p, verdict), c in zip(
                        view.comparisons, variant.comparisons, strict=True
                    )
                ),
            )
        )
    if view.tuning and variant.tuning is not None:
        out.append(
            DataTable(
                f"{s}-tuning",
                f"Baseline tuning on the validation users - {name}",
                (
                    DataColumn("Baseline"),
                    DataColumn("Setting"),
                    DataColumn("Validation score", True),
                    DataColumn("Chosen"),
                ),
                tuple(
                    (Entry(label), Entry(setting), _num(score, c.score), Entry(chosen))
                    for (label, setting, score, chosen), c in zip(
                        view.tuning, variant.tuning.candidates, strict=True
                    )
                ),
            )
        )
    return out


def _table_file(number: int, ext: str) -> str:
    return f"tables/table-{number}.{ext}"


@attrs.frozen
class RunSummary:
    """
    One run for the index page: where its report is (relative to the index), its results and manifest.
    """

    href: str
    results: Results
    manifest: Mapping[str, Any] | None = None


def render_index(runs: Sequence[RunSummary]) -> str:
    """
    The index page of many reports: one row per run and variant with the headline metrics, linking each
    report, and a side-by-side table of the first two runs' headline numbers.
    """
    rows = []
    for run in runs:
        m = run.manifest or {}
        for v in run.results.variants:
            for model in v.models:
                if model.role == "ideal":
                    continue
                rows.append(
                    (
                        run.href,
                        run.results.experiment,
                        str(m.get("finished", m.get("started", ""))),
                        str(m.get("provider", "")),
                        v.name,
                        display_label(model),
                        tuple(_format_metric(dict(model.metrics).get(n)) for n in _HEADLINE),
                    )
                )
    compare: list[tuple[str, str, tuple[str, ...]]] = []
    if len(runs) >= 2:
        a, b = runs[0].results, runs[1].results
        for va in a.variants:
            vb = next((x for x in b.variants if x.name == va.name), None)
            if vb is None:
                continue
            for ma in va.models:
                mb = next((x for x in vb.models if x.label == ma.label), None)
                if mb is None or ma.role == "ideal":
                    continue
                cells = []
                for n in _HEADLINE:
                    x, y = dict(ma.metrics).get(n), dict(mb.metrics).get(n)
                    cells.append(
                        f"{_format_metric(x)} / {_format_metric(y)}"
                        + (f" ({y - x:+.4f})" if x is not None and y is not None else "")
                    )
                compare.append((va.name, display_label(ma), tuple(cells)))
    return (
        _environment()
        .get_template("index.html.j2")
        .render(
            rows=tuple(rows),
            headline=tuple(metric_label(n) for n in _HEADLINE),
            compare=tuple(compare),
            compared=tuple(r.results.experiment for r in runs[:2]) if len(runs) >= 2 else (),
        )
    )


@functools.cache
def _environment() -> jinja2.Environment:
    """
    The Jinja environment, built on first use (not at import) and shared after.
    """
    return jinja2.Environment(
        loader=jinja2.PackageLoader("llmrec.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _finite(value: Any) -> Any:
    """
    A JSON value with NaN and infinities as null (JSON has no spelling for them).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _simulated(manifest: Mapping[str, Any] | None) -> bool:
    return manifest is not None and manifest.get("provider") == "fake"


def _header(results: Results, manifest: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """
    (label, text) facts for the page header, from the manifest (when known) and the results.
    """
    m = manifest or {}
    out: list[tuple[str, str]] = [("Experiment", results.experiment)]
    date = m.get("finished") or m.get("started") or m.get("started_at")
    if date:
        out.append(("Date", str(date)))
    dataset = m.get("dataset")
    size = ""
    if results.variants:
        counts = dict(results.variants[0].counts)
        if "eligible_users" in counts:
            size = f"{counts['eligible_users']:,} eligible users"
        # the catalogue the popularity section ranked: every movie of the dataset
        catalogue = results.variants[0].popularity.catalogue if results.variants[0].popularity else 0
        if catalogue:
            size += (", " if size else "") + f"{catalogue:,} movies"
    if isinstance(dataset, Mapping):
        text = str(dataset.get("format", "?"))
        if dataset.get("path"):
            text += f" ({dataset['path']})"
        out.append(("Dataset", text + (f", {size}" if size else "")))
    elif size:
        out.append(("Dataset", size))
    tests = ", ".join(f"{v.name}: {v.test_users:,}" for v in results.variants)
    if tests:
        out.append(("Test users", tests))
    if "provider" in m:
        backend = m.get("backend")
        out.append(("Provider", str(m["provider"]) + (f" — {backend}" if backend else "")))
    models = m.get("models")
    if isinstance(models, list) and models:
        base = sorted(
            {str(x.get("model")) for x in models if isinstance(x, Mapping) and x.get("role") == "baseline"}
        )
        tuned = [
            f"{x.get('model')} ({x.get('variant')})"
            for x in models
            if isinstance(x, Mapping) and x.get("role") == "finetuned"
        ]
        if base:
            out.append(("Base model", ", ".join(base)))
        if tuned:
            out.append(("Fine-tuned models", ", ".join(tuned)))
    if m.get("spec_hash"):
        out.append(("Spec hash", str(m["spec_hash"])))
    return tuple(out)


def _verdict(variant: VariantResults, metric_names: tuple[str, ...]) -> tuple[str, ...]:
    """
    Sentences drawn from the numbers: who wins which metrics, which differences are significant, which way.
    """
    lines: list[str] = []
    if variant.too_small:
        lines.append(
            f"Only {variant.test_users:,} test users "
            f"(the spec asks for at least {variant.min_test_users:,}): "
            "these numbers are too noisy to mean anything."
        )
    competing = [m for m in variant.models if m.role != "ideal"]
    wins: dict[str, list[str]] = {}
    for name in metric_names:
        scored = [
            (v, m) for m in competing if (v := dict(m.metrics).get(name)) is not None and not math.isnan(v)
        ]
        if not scored:
            continue
        best = max(v for v, _ in scored)
        for v, m in scored:
            if math.isclose(v, best):
                wins.setdefault(display_label(m), []).append(metric_label(name))
    for label, names in sorted(wins.items(), key=lambda kv: -len(kv[1])):
        which = "every metric" if len(names) == len(metric_names) else ", ".join(names)
        lines.append(f"{label} has the best value on {len(names)} of {len(metric_names)} metrics ({which}).")
    pairs: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
    for c in variant.comparisons:
        pairs.setdefault((c.a, c.b), []).append((c.metric, c.difference, c.p_holm))
    for (a, b), rows in pairs.items():
        better = [metric_label(n) for n, d, p in rows if p < ALPHA and d > 0]
        worse = [metric_label(n) for n, d, p in rows if p < ALPHA and d < 0]
        unclear = len(rows) - len(better) - len(worse)
        parts = []
        if better:
            parts.append(f"significantly better on {_some(better, len(rows))}")
        if worse:
            parts.append(f"significantly worse on {_some(worse, len(rows))}")
        if unclear:
            parts.append(f"no significant difference on {unclear} of {len(rows)}")
        lines.append(f"{a} vs {b}: " + "; ".join(parts) + f" (Holm-corrected p < {ALPHA}).")
    return tuple(lines)


def _some(names: list[str], total: int) -> str:
    if len(names) == total:
        return f"all {total} metrics"
    return f"{len(names)} of {total} ({', '.join(names)})"


def _holm_family_text(family: str | None) -> str:
    if family == "table":
        return "across every pair and metric row of the variant (one family)"
    return "across the metric rows of each pair"


def _popularity_text(variant: VariantResults) -> str:
    pop = variant.popularity
    if pop is None or not pop.items or math.isnan(pop.top100_share):
        return ""
    return (
        f"Popularity: {pop.top100_share:.0%} of the test users' ground-truth movies are among the 100 most "
        f"popular of the fitting data ({pop.top20_share:.0%} among the top 20); median popularity rank "
        f"{pop.median_rank:,.0f} of {pop.catalogue:,}. A high share means this variant rewards fame more "
        "than taste."
    )


def _protocol_text(variant: VariantResults) -> str:
    protocol = variant.protocol
    if protocol is None:
        return ""
    if protocol.temporal == "global":
        split = ""
        if protocol.ratings_before is not None and protocol.ratings_after is not None:
            split = f" ({protocol.ratings_before:,} ratings before, {protocol.ratings_after:,} on or after)"
        return (
            f"Protocol: global temporal cut on {protocol.cut_date}, the date at quantile "
            f"{protocol.cut_quantile:g} of all rating dates{split}. Eligibility, profiles and the classic "
            "baselines' fitting data use only ratings dated before it; the relevant movies are ratings on "
            "or after it."
        )
    if protocol.temporal == "per_user":
        return (
            "Protocol: per-user temporal hold-out (each user's latest ratings are the relevant ones). Other "
            "users' ratings dated after a test user's cut still reach the classic baselines' fitting data, "
            "and eligibility counts the held-out ratings too."
        )
    return (
        f'Protocol: "{protocol.ground_truth}" ground truth, no split in time: the relevant movies come from '
        "the whole rating matrix, and the classic baselines are fitted on that matrix without the test users."
    )


def _setting_text(label: str, setting: float | int | str | None) -> str:
    """
    A classic baseline with its setting: "EASE (λ = 200)", "ItemKNN (50 neighbours)".
    """
    if label == "EASE" and isinstance(setting, int | float):
        return f"EASE (λ = {setting:g})"
    if label == "ItemKNN" and setting not in (None, ""):
        return f"ItemKNN ({'all' if setting == 'all' else setting} neighbours)"
    return label


def _reference_text(variant: VariantResults) -> str:
    tuning = variant.tuning
    if tuning is None:
        return ""
    chosen = _setting_text(tuning.reference, tuning.setting(tuning.reference))
    others = ", ".join(_setting_text(label, s) for label, s in tuning.settings if label != tuning.reference)
    fitted = (
        "tuned and refitted on the training pairs"
        if tuning.fit == "train_pairs"
        else "tuned on fits excluding the validation and test users, then refitted without the test users"
    )
    if not tuning.tuned:
        text = (
            f"Reference baseline: {chosen}, not tuned: {tuning.note}; every classic baseline at its "
            "default setting and the reference fixed in advance"
        )
    else:
        text = (
            f"Reference baseline: {chosen}, chosen by validation {metric_label(tuning.metric)} over "
            f"{tuning.validation_users:,} validation users; {fitted}"
        )
    return text + (f" (also {others})." if others and tuning.tuned else ".")


def _tuning_rows(variant: VariantResults) -> tuple[tuple[str, str, str, str], ...]:
    tuning = variant.tuning
    if tuning is None:
        return ()

    def mark(label: str, setting: float | int | str) -> str:
        chosen = tuning.setting(label)
        if chosen is not None and chosen != setting:
            return ""
        marks = ["chosen"] if chosen is not None else []
        return ", ".join(marks + (["reference"] if label == tuning.reference else []))

    return tuple(
        (
            c.label,
            "" if c.setting == "" else _setting_text(c.label, c.setting).removeprefix(c.label).strip(" ()"),
            _format_metric(c.score),
            mark(c.label, c.setting),
        )
        for c in tuning.candidates
    )


def _variant_view(number: int, variant: VariantResults, results: Results) -> _VariantView:
    """
    The formatted part of one variant.
    """
    metric_names = results.metric_names
    table = metric_table(number, variant, metric_names)
    return _VariantView(
        number=number,
        name=variant.name,
        table=table,
        letters=tuple(letters_of(table).items()),
        verdict=_verdict(variant, metric_names),
        holm_family=_holm_family_text(variant.holm_family),
        popularity=_popularity_text(variant),
        protocol=_protocol_text(variant),
        reference=_reference_text(variant),
        tuning=_tuning_rows(variant),
        tuning_note=(
            f"Each candidate's mean {metric_label(variant.tuning.metric)} on the "
            f"{variant.tuning.validation_users:,} validation users, fitted on "
            + (
                "the training pairs"
                if variant.tuning.fit == "train_pairs"
                else "every rating except the validation and test users'"
            )
            + "; the test users are not used."
            if variant.tuning is not None
            else ""
        ),
        paper_by_spec=variant.paper_table is not None,
        too_small=variant.too_small,
        test_users=variant.test_users,
        min_test_users=variant.min_test_users,
        grounding=tuple(
            (m.label, tuple(_format_rate(dict(m.grounding).get(key)) for key, _ in _GROUNDING))
            for m in variant.models
            if m.grounding
        ),
        sensitivity_headers=tuple(metric_label(n) for n in _sensitivity_metrics(metric_names)),
        sensitivity=tuple(
            (
                m.label,
                mode + (" (scored)" if mode == results.matching else ""),
                tuple(_format_metric(dict(values).get(n)) for n in _sensitivity_metrics(metric_names)),
            )
            for m in variant.models
            for mode, values in m.sensitivity
        ),
        beyond=tuple(
            (
                m.label,
                _format_rate(dict(m.beyond).get("coverage")),
                _format_metric(dict(m.beyond).get("popularity_percentile"), digits=1),
            )
            for m in variant.models
            if m.beyond
        ),
        comparisons=tuple(
            (
                f"{c.a} vs {c.b}",
                metric_label(c.metric),
                f"{c.difference:+.4f}",
                f"[{c.low:+.4f}, {c.high:+.4f}]",
                _format_p(c.p_value),
                _format_p(c.p_holm),
                (f"{c.a} better" if c.difference > 0 else f"{c.b} better")
                if c.p_holm < ALPHA
                else "not significant",
            )
            for c in variant.comparisons
        ),
        confidence=f"{variant.confidence:.0%}" if variant.confidence is not None else "",
        counts=tuple((key, f"{value:,}") for key, value in variant.counts),
        sampling=tuple((key, _format_value(value)) for key, value in variant.sampling),
        models=variant.models,
        funnel=_funnel_rows(variant.funnel),
        ground_truth_sizes=tuple(
            (str(size), f"{n:,}") for size, n in enumerate(variant.funnel.ground_truth_sizes)
        )
        if variant.funnel is not None
        else (),
        csv_file=_table_file(number, "csv"),
        tex_file=_table_file(number, "tex"),
    )


def _usage(manifest: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """
    The manifest's token usage as (name, formatted count) rows.
    """
    usage = (manifest or {}).get("usage")
    if not isinstance(usage, Mapping):
        return ()
    return tuple(
        (str(k).replace("_", " "), f"{v:,}" if isinstance(v, int) else _format_value(v))
        for k, v in usage.items()
    )


def _cost(manifest: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """
    The manifest's estimated and actual cost and tokens as (label, text) rows.
    """
    cost = (manifest or {}).get("cost")
    if not isinstance(cost, Mapping):
        return ()
    currency = str(cost.get("currency", "USD"))

    def money(value: object) -> str:
        return f"{value:,.2f} {currency}" if isinstance(value, int | float) else _MISSING

    def tokens(value: object) -> str:
        return f"{value:,}" if isinstance(value, int) else _MISSING

    out: list[tuple[str, str]] = []
    estimated = cost.get("estimated_usd")
    if isinstance(estimated, Mapping):
        parts = " / ".join(money(estimated.get(k)) for k in ("low", "expected", "worst"))
        out.append(("Estimated cost (low / expected / worst)", parts))
    if "actual_usd" in cost:
        out.append(("Actual cost", money(cost.get("actual_usd"))))
    est_tokens = cost.get("estimated_tokens")
    if isinstance(est_tokens, Mapping):
        parts = " / ".join(tokens(est_tokens.get(k)) for k in ("expected", "worst"))
        out.append(("Estimated tokens (expected / worst)", parts))
    actual_tokens = cost.get("actual_tokens")
    if isinstance(actual_tokens, Mapping):
        parts = ", ".join(f"{k} {tokens(v)}" for k, v in actual_tokens.items())
        out.append(("Actual tokens", parts))
    if cost.get("prices_as_of"):
        out.append(("Prices as of", str(cost["prices_as_of"])))
    if cost.get("free"):
        out.append(("Note", "this provider charges nothing"))
    return tuple(out)


def _cost_csv(cost: object) -> tuple[tuple[CsvValue, ...], ...]:
    """
    The manifest's cost as (quantity, value, unit) rows, one number each, for the cost table's CSV.
    """
    if not isinstance(cost, Mapping):
        return ()
    currency = str(cost.get("currency", "USD"))
    out: list[tuple[CsvValue, ...]] = []

    def scalar(value: object) -> CsvValue:
        return value if isinstance(value, int | float | str) else None

    for key, what, unit in (
        ("estimated_usd", "estimated cost", currency),
        ("actual_usd", "actual cost", currency),
        ("estimated_tokens", "estimated tokens", "tokens"),
        ("actual_tokens", "actual tokens", "tokens"),
    ):
        value = cost.get(key)
        if isinstance(value, Mapping):
            out += [(f"{what} {k}", scalar(v), unit) for k, v in value.items()]
        elif key in cost:
            out.append((what, scalar(value), unit))
    if cost.get("prices_as_of"):
        out.append(("prices as of", str(cost["prices_as_of"]), "date"))
    if "free" in cost:
        out.append(("free", "true" if cost.get("free") else "false", ""))
    return tuple(out)


def _jobs(manifest: Mapping[str, Any] | None) -> tuple[tuple[str, str, str, str, str], ...]:
    """
    The manifest's fine-tune jobs as (variant, job id, status, model, trained tokens) rows.
    """
    jobs = (manifest or {}).get("finetune_jobs")
    if not isinstance(jobs, list):
        return ()
    return tuple(
        (
            str(j.get("variant", "")),
            str(j.get("job", "")),
            str(j.get("status", "")),
            str(j.get("model", "")),
            f"{j['trained_tokens']:,}" if isinstance(j.get("trained_tokens"), int) else _MISSING,
        )
        for j in jobs
        if isinstance(j, Mapping)
    )


def _protocol(
    results: Results, manifest: Mapping[str, Any] | None, predictions: Sequence[Prediction]
) -> tuple[tuple[str, str], ...]:
    """
    (label, text) rows describing how the numbers were made, from the results, manifest and predictions.
    """
    out: list[tuple[str, str]] = []
    for v in results.variants:
        sampling = dict(v.sampling)
        counts = dict(v.counts)
        split = ", ".join(
            f"{k.removesuffix('_users')} {counts[k]:,}"
            for k in ("train_users", "validation_users", "test_users")
            if k in counts
        )
        if split:
            out.append((f"Split ({v.name})", f"users split into {split}; only test users are scored"))
        excluded = counts.get("sampled_users", 0) - counts.get("with_ground_truth", 0)
        if "sampled_users" in counts and "with_ground_truth" in counts:
            out.append((f"Excluded ({v.name})", f"{excluded:,} sampled users with an empty ground truth"))
        gt = ", ".join(
            f"{k} = {_format_value(sampling[k])}"
            for k in ("watch_factor", "neighbor_min_stars", "max_ground_truth")
            if k in sampling
        )
        if gt:
            out.append((f"Ground truth ({v.name})", f"movies rated by like-minded neighbours ({gt})"))
    out.append(
        (
            "Generation",
            "open generation: the model writes titles, matched to the catalogue"
            + (f" ({results.matching} matching)" if results.matching else ""),
        )
    )
    if manifest is not None and manifest.get("spec_hash"):
        out.append(("Spec hash", str(manifest["spec_hash"])))
    prompt_hash = (manifest or {}).get("prompt_template_hash")
    if prompt_hash:
        out.append(("Prompt template hash", str(prompt_hash)))
    if predictions:
        leaks = sum(1 for p in predictions if set(p.ground_truth) & set(p.profile))
        # the prompt lists titles: a ground-truth movie sharing a profile movie's title leaks as well
        named = sum(1 for p in predictions if set(p.ground_truth_titles) & set(p.profile_titles))
        checked = len({(p.variant, p.user) for p in predictions})
        found = [
            f"{n:,} lists have a ground-truth {what} in the prompt's profile"
            for n, what in ((leaks, "movie"), (named, "title"))
            if n
        ]
        out.append(
            (
                "Leak check",
                "; ".join(found)
                if found
                else "no ground-truth movie or title is in any prompt's profile "
                f"({checked:,} test users checked)",
            )
        )
    return tuple(out)


def _funnel_rows(funnel: Funnel | None) -> tuple[tuple[str, str], ...]:
    """
    Neighbour statistics and the mean ground-truth size, as (label, formatted value) rows.
    """
    if funnel is None:
        return ()

    def line(stats: tuple[tuple[str, float], ...]) -> str:
        d = dict(stats)
        return " / ".join(f"{d[k]:,.1f}".removesuffix(".0") for k in ("min", "median", "mean", "max"))

    mean = funnel.mean_ground_truth_size
    return (
        ("neighbour candidates (min / median / mean / max)", line(funnel.neighbor_candidates)),
        ("neighbours drawn (min / median / mean / max)", line(funnel.neighbors_drawn)),
        ("mean ground-truth size (kept users)", "n/a" if math.isnan(mean) else f"{mean:.2f}"),
    )


_GROUNDING = (
    ("parse_failure_rate", "Parse failures"),
    ("short_list_rate", "Short lists"),
    ("hallucinated_rate", "Hallucinated items"),
    ("duplicate_rate", "Repeated items"),
    ("in_profile_rate", "Items already in the profile"),
    ("fuzzy_rate", "Fuzzy-matched items"),
)


def _spread_rows(results: Results) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """
    (variant, model, "mean ± std" per shown metric) for a repeated experiment.
    """
    shown = _sensitivity_metrics(results.metric_names)
    cells = {(x.variant, x.label, x.metric): x for x in results.spread}
    rows = []
    for variant in results.variants:
        for model in variant.models:
            values = []
            for name in shown:
                x = cells.get((variant.name, model.label, name))
                values.append(_MISSING if x is None else f"{x.mean:.4f} ± {x.std:.4f}")
            if any(v != _MISSING for v in values):
                rows.append((variant.name, model.label, tuple(values)))
    return tuple(rows)


def _sensitivity_metrics(metric_names: tuple[str, ...]) -> tuple[str, ...]:
    """
    The metrics shown per matching mode: P and R at the largest K, MRR and MAP (those present).
    """
    ks = [int(n.split("@")[1]) for n in metric_names if n.startswith("precision@")]
    wanted = [f"precision@{max(ks)}", f"recall@{max(ks)}"] if ks else []
    return tuple(n for n in (*wanted, "mrr", "map") if n in metric_names)


def _format_rate(value: float | None) -> str:
    """
    A share as a percentage with one decimal; a dash when missing, "n/a" when undefined.
    """
    if value is None:
        return _MISSING
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:.1f} %"


def _format_interval(interval: tuple[float, float] | None) -> str:
    """
    A confidence interval as "[low, high]", or "" when there is none.
    """
    if interval is None:
        return ""
    return f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _format_p(p: float) -> str:
    """
    A p-value: four decimals, or "< 0.0001" below that.
    """
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


def _format_metric(value: float | None, digits: int = 4) -> str:
    """
    A metric with four decimals, as in the paper; a dash when missing, "n/a" when undefined (NaN).
    """
    if value is None:
        return _MISSING
    if math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _ks(metric_names: tuple[str, ...]) -> tuple[str, ...]:
    """
    The distinct K values of the @K metrics, in order of first appearance.
    """
    ks: dict[str, None] = {}
    for name in metric_names:
        _, at, k = name.partition("@")
        if at:
            ks[k] = None
    return tuple(ks)


def _manifest_view(manifest: Mapping[str, Any] | None) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """
    The manifest's spec text (if any) and its other entries flattened to (dotted key, text) pairs.
    """
    if manifest is None:
        return None, ()
    spec = manifest.get("spec_text")
    items = tuple(_flatten({k: v for k, v in manifest.items() if k != "spec_text"}, ""))
    return (None if spec is None else str(spec)), items


def _flatten(mapping: Mapping[Any, Any], prefix: str) -> list[tuple[str, str]]:
    """
    Nested mappings as (dotted key, text) pairs, in the mapping's own order.
    """
    out: list[tuple[str, str]] = []
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, f"{path}."))
        else:
            out.append((path, _format_value(value)))
    return out


def _format_value(value: object) -> str:
    """
    A setting or manifest value as text: JSON spelling for scalars and lists, ``str`` otherwise.
    """
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float | bool) for v in value):
        return ", ".join(_format_value(v) for v in value)
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
