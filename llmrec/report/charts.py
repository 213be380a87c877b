"""
Chart fragments for the report: pure functions from ``Results`` to HTML ``<div>`` strings.

The fragments leave plotly.js out (``include_plotlyjs=False``); the page loads it from the sibling
``plotly.min.js`` that ``report_assets`` provides, so the report opens from ``file://`` offline.
Every div gets a fixed id, so the same results always give byte-identical HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llmrec.results import ModelScores, Results, metric_label

__all__ = [
    "FIGURE2_DIV_ID",
    "display_label",
    "figure2_html",
    "funnel_html",
    "ground_truth_sizes_html",
    "popularity_html",
    "training_curves_html",
]

FIGURE2_DIV_ID = "figure-2"

# Baseline muted, fine-tuned strong, as in the paper's Figure 2; later labels take the rest in order
# (Okabe-Ito hues, told apart with common colour-vision deficiencies).
_PALETTE = ("#8a94a1", "#0b62c4", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#6b4c9a")
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13, "color": "#1d2430"}
_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
# The legend sits in the top-left corner of the figure, the toolbar in the top-right one, and the plot
# area starts below both (margin t): they cannot overlap however many entries the legend wraps into.
_LEGEND_ROW = 28
_PANEL_HEIGHT = 420
_MAX_COLUMNS = 2


def display_label(model: ModelScores) -> str:
    """
    A column's name as the page shows it: the paper's "Baseline" is subtitled zero-shot.
    """
    return f"{model.label} (zero-shot)" if model.role == "baseline" else model.label


def figure2_html(results: Results) -> str:
    """
    Figure 2 of the paper: grouped bars of the @K metrics, one bar per model, one panel per variant.

    The x axis lists every metric name containing "@" (Precision/Recall/F1 at each K), in the order
    of ``results.metric_names``; a model missing a metric, or scoring NaN on it, gets no bar there.
    NDCG and HitRate stay in the tables (the paper's figure has P, R and F1 only) when P/R/F1 exist.

    Args:
        results: the scored experiment.

    Returns:
        A ``<div>`` fragment without plotly.js, or ``""`` when there is no variant or no @K metric.
    """
    at_k = tuple(name for name in results.metric_names if "@" in name)
    prf = tuple(n for n in at_k if n.partition("@")[0] in ("precision", "recall", "f1"))
    at_k = prf or at_k
    if not results.variants or not at_k:
        return ""
    categories = [metric_label(name) for name in at_k]
    columns = min(len(results.variants), _MAX_COLUMNS)
    rows = math.ceil(len(results.variants) / columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        # Plotly reads annotation text as a small HTML subset; escaping shows the name as written.
        subplot_titles=[html.escape(v.name) for v in results.variants],
        shared_yaxes=True,
        horizontal_spacing=0.06,
        vertical_spacing=0.3 if rows > 1 else 0.0,
    )
    colors: dict[str, str] = {}
    top = 0.0
    for variant in results.variants:
        for model in variant.models:
            if model.role != "ideal" and model.label not in colors:
                colors[model.label] = _PALETTE[len(colors) % len(_PALETTE)]
    # Values printed on the bars only with at most two columns (more collide) and no whiskers (a whisker
    # would cross its bar's value); hover and the tables give them otherwise.
    labelled = max(
        (sum(m.role != "ideal" for m in v.models) for v in results.variants), default=0
    ) <= 2 and not any(m.intervals for v in results.variants for m in v.models if m.role != "ideal")
    shown: set[str] = set()
    for index, variant in enumerate(results.variants):
        row, col = divmod(index, columns)
        for model in variant.models:
            if model.role == "ideal":
                continue  # the best achievable values are in the tables; as bars they would dwarf the rest
            first = model.label not in shown
            shown.add(model.label)
            heights = [_bar_value(dict(model.metrics).get(name)) for name in at_k]
            errors = _error_bars(model, at_k, heights)
            for name_k, h in zip(at_k, heights, strict=True):
                interval = model.interval(name_k)
                if h is not None:
                    top = max(top, h, interval[1] if interval is not None else h)
            name = display_label(model)
            fig.add_trace(
                go.Bar(
                    name=html.escape(name),
                    legendgroup=model.label,
                    showlegend=first,
                    x=categories,
                    y=heights,
                    error_y=errors,
                    marker={"color": colors[model.label]},
                    hovertemplate=f"{html.escape(name)}<br>%{{x}}: %{{y:.4f}}<extra></extra>",
                    **(
                        {
                            "texttemplate": "%{y:.3f}",
                            "textposition": "outside",
                            "textfont": {"size": 11},
                            "cliponaxis": False,
                        }
                        if labelled
                        else {}
                    ),
                ),
                row=row + 1,
                col=col + 1,
            )
    legend_rows = math.ceil(len(colors) / 4)
    fig.update_layout(
        template="none",
        barmode="group",
        bargap=0.2,
        bargroupgap=0.05,
        height=_PANEL_HEIGHT * rows + _LEGEND_ROW * legend_rows,
        margin={"l": 70, "r": 20, "t": 60, "b": 100 + _LEGEND_ROW * legend_rows, "autoexpand": False},
        font=_FONT,
        legend={
            "orientation": "h",
            "x": 0.0,
            "xanchor": "left",
            "y": 0.0,
            "yanchor": "bottom",
            "yref": "container",
            "entrywidthmode": "pixels",
        },
        paper_bgcolor="white",
        plot_bgcolor="white",
        # a bar value that would need a smaller font to fit its bar is hidden, never shrunk to a smudge
        uniformtext={"minsize": 10, "mode": "hide"},
    )
    fig.update_yaxes(
        rangemode="tozero",
        range=[0.0, (top or 1.0) * 1.12],
        gridcolor="#e5e8ec",
        zeroline=True,
        zerolinecolor="#8a94a1",
        tickformat=".2f",
    )
    fig.update_yaxes(title_text="Mean score over test users", col=1)
    fig.update_xaxes(
        showgrid=False, linecolor="#8a94a1", tickangle=-30, title_text="Metric", title_standoff=8
    )
    fragment: str = fig.to_html(
        include_plotlyjs=False,
        full_html=False,
        div_id=FIGURE2_DIV_ID,
        config=_CONFIG,
    )
    return fragment


def _simple_bars(
    div_id: str,
    traces: list[tuple[str, list[str], list[float]]],
    *,
    x_title: str,
    y_title: str,
    height: int = 380,
    y_format: str = "",
) -> str:
    """
    A plain grouped-bar chart (one trace per (name, x, y)), legend below the plot, toolbar above it.
    """
    fig = go.Figure()
    for index, (name, xs, ys) in enumerate(traces):
        fig.add_trace(
            go.Bar(
                name=html.escape(name),
                x=xs,
                y=ys,
                marker={"color": _PALETTE[(index + 1) % len(_PALETTE)]},
                hovertemplate=f"{html.escape(name)}<br>%{{x}}: %{{y}}<extra></extra>",
            )
        )
    legend_rows = math.ceil(len(traces) / 4)
    fig.update_layout(
        template="none",
        barmode="group",
        height=height + _LEGEND_ROW * legend_rows,
        margin={"l": 70, "r": 20, "t": 40, "b": 90 + _LEGEND_ROW * legend_rows, "autoexpand": False},
        font=_FONT,
        showlegend=True,
        legend={
            "orientation": "h",
            "x": 0.0,
            "xanchor": "left",
            "y": 0.0,
            "yanchor": "bottom",
            "yref": "container",
        },
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    fig.update_yaxes(title_text=y_title, rangemode="tozero", gridcolor="#e5e8ec", tickformat=y_format)
    fig.update_xaxes(title_text=x_title, showgrid=False, linecolor="#8a94a1", type="category")
    fragment: str = fig.to_html(include_plotlyjs=False, full_html=False, div_id=div_id, config=_CONFIG)
    return fragment


_FUNNEL_STEPS = (
    ("eligible_users", "eligible"),
    ("sampled_users", "sampled"),
    ("with_ground_truth", "with ground truth"),
    ("train_users", "train"),
    ("validation_users", "validation"),
    ("test_users", "test"),
)


def funnel_html(results: Results) -> str:
    """
    The sampling funnel: users at each step (eligible, sampled, with ground truth, train/validation/test).

    Returns:
        A ``<div>`` fragment (id ``funnel-chart``), or ``""`` when no variant has those counts.
    """
    traces = []
    for v in results.variants:
        counts = dict(v.counts)
        steps = [(label, counts[key]) for key, label in _FUNNEL_STEPS if key in counts]
        if steps:
            traces.append((v.name, [s for s, _ in steps], [float(n) for _, n in steps]))
    if not traces:
        return ""
    return _simple_bars("funnel-chart", traces, x_title="Step", y_title="Users")


def ground_truth_sizes_html(results: Results) -> str:
    """
    The ground-truth size histogram: sampled users per ground-truth size (0: dropped), one trace per variant.

    Returns:
        A ``<div>`` fragment (id ``ground-truth-chart``), or ``""`` when no variant has a funnel.
    """
    traces = [
        (
            v.name,
            [str(i) for i in range(len(v.funnel.ground_truth_sizes))],
            [float(n) for n in v.funnel.ground_truth_sizes],
        )
        for v in results.variants
        if v.funnel is not None and v.funnel.ground_truth_sizes
    ]
    if not traces:
        return ""
    return _simple_bars(
        "ground-truth-chart", traces, x_title="Ground-truth size (movies)", y_title="Sampled users"
    )


def popularity_html(results: Results) -> str:
    """
    The mean popularity percentile of the recommended movies per model, one trace per variant.

    Returns:
        A ``<div>`` fragment (id ``popularity-chart``), or ``""`` when no model has beyond-accuracy numbers.
    """
    traces = []
    for v in results.variants:
        pairs = [
            (display_label(m), dict(m.beyond)["popularity_percentile"])
            for m in v.models
            if "popularity_percentile" in dict(m.beyond)
            and not math.isnan(dict(m.beyond)["popularity_percentile"])
        ]
        if pairs:
            traces.append((v.name, [p for p, _ in pairs], [float(x) for _, x in pairs]))
    if not traces:
        return ""
    return _simple_bars(
        "popularity-chart", traces, x_title="Model", y_title="Mean popularity percentile", y_format=".0f"
    )


def _error_bars(model: ModelScores, names: tuple[str, ...], heights: list[float | None]) -> dict[str, object]:
    """
    Asymmetric error bars from the model's confidence intervals (none when it has none).
    """
    if not model.intervals:
        return {"visible": False}
    up: list[float] = []
    down: list[float] = []
    for name, height in zip(names, heights, strict=True):
        interval = model.interval(name)
        if interval is None or height is None:
            up.append(0.0)
            down.append(0.0)
        else:
            up.append(max(0.0, interval[1] - height))
            down.append(max(0.0, height - interval[0]))
    return {
        "type": "data",
        "symmetric": False,
        "array": up,
        "arrayminus": down,
        "thickness": 1,
        "width": 2,
        "color": "#4b5563",
    }


def _bar_value(value: float | None) -> float | None:
    """
    A bar height, or None (no bar) for a missing or NaN metric.
    """
    if value is None or math.isnan(value):
        return None
    return value


_CURVES = (
    ("train_loss", "train loss"),
    ("valid_loss", "validation loss"),
    ("valid_hit_rate", "validation hit rate"),
)


def training_curves_html(manifest: Mapping[str, Any] | None) -> str:
    """
    Each fine-tune's training curve from the manifest's ``training_curves`` (the provider's job events):
    one line per variant and reported quantity (train loss, validation loss, validation hit rate) by step.

    Returns:
        A ``<div>`` fragment (id ``training-chart``), or ``""`` when the provider reported no curve.
    """
    curves = (manifest or {}).get("training_curves")
    if not isinstance(curves, list):
        return ""
    fig = go.Figure()
    index = 0
    for curve in curves:
        if not isinstance(curve, Mapping):
            continue
        points = [p for p in curve.get("points", ()) if isinstance(p, Mapping) and "step" in p]
        for key, label in _CURVES:
            xs = [float(p["step"]) for p in points if isinstance(p.get(key), int | float)]
            ys = [float(p[key]) for p in points if isinstance(p.get(key), int | float)]
            if not ys:
                continue
            name = f"{curve.get('variant', '?')}: {label}"
            fig.add_trace(
                go.Scatter(
                    name=html.escape(name),
                    x=xs,
                    y=ys,
                    mode="lines+markers",
                    line={
                        "color": _PALETTE[(index + 1) % len(_PALETTE)],
                        "dash": "dot" if "valid" in key else "solid",
                    },
                    hovertemplate=f"{html.escape(name)}<br>step %{{x}}: %{{y:.4f}}<extra></extra>",
                )
            )
            index += 1
    if not fig.data:
        return ""
    legend_rows = math.ceil(len(fig.data) / 3)
    fig.update_layout(
        template="none",
        height=380 + _LEGEND_ROW * legend_rows,
        margin={"l": 70, "r": 20, "t": 40, "b": 90 + _LEGEND_ROW * legend_rows, "autoexpand": False},
        font=_FONT,
        showlegend=True,
        legend={
            "orientation": "h",
            "x": 0.0,
            "xanchor": "left",
            "y": 0.0,
            "yanchor": "bottom",
            "yref": "container",
        },
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    fig.update_yaxes(title_text="Value", gridcolor="#e5e8ec")
    fig.update_xaxes(title_text="Training step", showgrid=False, linecolor="#8a94a1")
    fragment: str = fig.to_html(
        include_plotlyjs=False, full_html=False, div_id="training-chart", config=_CONFIG
    )
    return fragment
