"""
Chart fragments for the report: pure functions from ``Results`` to HTML ``<div>`` strings.

The fragments leave plotly.js out (``include_plotlyjs=False``); the page loads it from the sibling
``plotly.min.js`` that ``report_assets`` provides, so the report opens from ``file://`` offline.
Every div gets a fixed id, so the same results always give byte-identical HTML.
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llmrec.results import ModelScores, Results, metric_label

__all__ = ["FIGURE2_DIV_ID", "figure2_html"]

FIGURE2_DIV_ID = "figure-2"

# Baseline muted, fine-tuned strong, as in the paper's Figure 2; later labels take the rest in order.
_PALETTE = ("#9aa5b1", "#2a6fdb", "#e07b39", "#3c9d5d", "#8e5bd1", "#c9414b")
_PANEL_HEIGHT = 420
_MAX_COLUMNS = 2


def figure2_html(results: Results) -> str:
    """
    Figure 2 of the paper: grouped bars of the @K metrics, one bar per model, one panel per variant.

    The x axis lists every metric name containing "@" (Precision/Recall/F1 at each K), in the order
    of ``results.metric_names``; a model missing a metric, or scoring NaN on it, gets no bar there.

    Args:
        results: the scored experiment.

    Returns:
        A ``<div>`` fragment without plotly.js, or ``""`` when there is no variant or no @K metric.
    """
    at_k = tuple(name for name in results.metric_names if "@" in name)
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
        vertical_spacing=0.18 if rows > 1 else 0.0,
    )
    colors: dict[str, str] = {}
    for index, variant in enumerate(results.variants):
        row, col = divmod(index, columns)
        for model in variant.models:
            if model.role == "ideal":
                continue  # the best achievable values are in the tables; as bars they would dwarf the rest
            first = model.label not in colors
            if first:
                colors[model.label] = _PALETTE[len(colors) % len(_PALETTE)]
            heights = [_bar_value(dict(model.metrics).get(name)) for name in at_k]
            fig.add_trace(
                go.Bar(
                    name=model.label,
                    legendgroup=model.label,
                    showlegend=first,
                    x=categories,
                    y=heights,
                    error_y=_error_bars(model, at_k, heights),
                    marker={"color": colors[model.label]},
                    texttemplate="%{y:.3f}",
                    textposition="outside",
                    textfont={"size": 10},
                    cliponaxis=False,
                    hovertemplate=f"{html.escape(model.label)}<br>%{{x}}: %{{y:.4f}}<extra></extra>",
                ),
                row=row + 1,
                col=col + 1,
            )
    fig.update_layout(
        template="none",
        barmode="group",
        bargap=0.2,
        bargroupgap=0.05,
        height=_PANEL_HEIGHT * rows,
        margin={"l": 60, "r": 20, "t": 90, "b": 80},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13},
        legend={
            "orientation": "h",
            "x": 0.5,
            "xanchor": "center",
            "y": 0.99,
            "yanchor": "top",
            "yref": "container",
        },
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    fig.update_yaxes(rangemode="tozero", gridcolor="#e5e8ec", zeroline=True, zerolinecolor="#9aa5b1")
    fig.update_yaxes(title_text="Score", col=1)
    fig.update_xaxes(showgrid=False, linecolor="#9aa5b1", tickangle=-30)
    fragment: str = fig.to_html(
        include_plotlyjs=False,
        full_html=False,
        div_id=FIGURE2_DIV_ID,
        config={"displaylogo": False, "responsive": True},
    )
    return fragment


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
