"""
The HTML report: a pure function from ``Results`` (and optionally the run manifest) to a page string.

Nothing here reads files the caller names, the environment, the clock or the network; the template
ships inside the package. ``cli.py`` writes the page and the assets from ``report_assets`` beside it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from typing import Any

import attrs
import jinja2
import plotly.offline
from markupsafe import Markup

from llmrec.report.charts import FIGURE2_DIV_ID, figure2_html
from llmrec.results import Funnel, ModelScores, Results, VariantResults, metric_label

__all__ = ["PLOTLY_JS", "render_report", "report_assets"]

PLOTLY_JS = "plotly.min.js"
"""The file name the page loads plotly.js from, relative to the page itself."""

_FIRST_TABLE = 2  # the paper's results tables are Table 2 (profileData50) and Table 3 (profileData60)
_CAPTION = "Comparison of performance metrics between the baseline and fine-tuned models"
_MISSING = "—"


@attrs.frozen
class _MetricTable:
    """
    One variant's Table 2/3, formatted for the template.
    """

    number: int
    name: str
    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    """(metric label, ((value, confidence interval or ""), ...) per column)."""
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
    """(pair, metric, difference, interval, p, Holm p, significant at 0.05) per row."""
    confidence: str


def render_report(results: Results, *, manifest: Mapping[str, Any] | None = None) -> str:
    """
    Render the experiment's report as one static HTML page.

    The page holds one table per variant (numbered from Table 2, as in the paper), the variant's
    counts, sampling settings and models under it, Figure 2 (see ``figure2_html``) and a
    "Reproduce" section with the manifest's ``spec_text`` and every other key it has. It loads
    plotly.js from the sibling file ``plotly.min.js`` and from nowhere else.

    Args:
        results: the scored experiment.
        manifest: the run's ``manifest.json`` content (spec text, versions, timestamps), if known;
            any keys may be missing.

    Returns:
        The page; the same arguments always give the same string.
    """
    template = _environment().get_template("report.html.j2")
    spec_text, details = _manifest_view(manifest)
    return template.render(
        title=results.title,
        experiment=results.experiment,
        schema_version=results.schema_version,
        tables=tuple(
            _metric_table(i + _FIRST_TABLE, v, results.metric_names, results.matching)
            for i, v in enumerate(results.variants)
        ),
        figure_number=_FIRST_TABLE,
        ks=_ks(results.metric_names),
        figure=Markup(figure2_html(results)),
        figure_id=FIGURE2_DIV_ID,
        plotly_js=PLOTLY_JS,
        has_manifest=manifest is not None,
        spec_text=spec_text,
        manifest_items=details,
        grounding_headers=_GROUNDING,
        seeds=", ".join(str(x) for x in results.seeds),
        spread_headers=tuple(metric_label(n) for n in _sensitivity_metrics(results.metric_names)),
        spread=_spread_rows(results),
    )


def report_assets() -> dict[str, str]:
    """
    The files the page needs beside it, by file name: only plotly.js, so it opens offline.

    Returns:
        ``{"plotly.min.js": <the plotly.js bundle shipped with the installed plotly>}``.
    """
    return {PLOTLY_JS: plotly.offline.get_plotlyjs()}


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


def _metric_table(
    number: int, variant: VariantResults, metric_names: tuple[str, ...], matching: str | None = None
) -> _MetricTable:
    """
    The formatted table of one variant.
    """
    scores = tuple(dict(m.metrics) for m in variant.models)
    return _MetricTable(
        number=number,
        name=variant.name,
        caption=f"Table {number}: {_CAPTION} - {variant.name}",
        headers=tuple(m.label for m in variant.models),
        rows=tuple(
            (
                metric_label(n),
                tuple(
                    (_format_metric(s.get(n)), _format_interval(m.interval(n)))
                    for s, m in zip(scores, variant.models, strict=True)
                ),
            )
            for n in metric_names
        ),
        grounding=tuple(
            (m.label, tuple(_format_rate(dict(m.grounding).get(key)) for key, _ in _GROUNDING))
            for m in variant.models
            if m.grounding
        ),
        sensitivity_headers=tuple(metric_label(n) for n in _sensitivity_metrics(metric_names)),
        sensitivity=tuple(
            (
                m.label,
                mode + (" (scored)" if mode == matching else ""),
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
                "yes" if c.p_holm < 0.05 else "no",
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
    )


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
