"""
Tables 2 and 3 as data: columns, cells with intervals, significance letters, the best cell per row, the
paper's published values; and their CSV and LaTeX (booktabs) spellings.

Everything here is a pure function of ``Results`` (and the package's ``paper_tables.toml``).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import tomllib
from collections.abc import Mapping
from importlib import resources

import attrs

from llmrec.results import ModelScores, VariantResults, metric_label

__all__ = [
    "ALPHA",
    "PAPER_METRICS",
    "Cell",
    "Column",
    "CsvValue",
    "DataColumn",
    "DataTable",
    "Entry",
    "MetricTable",
    "PaperTable",
    "data_table_csv",
    "data_table_latex",
    "file_stem",
    "metric_table",
    "paper_table_for",
    "paper_tables",
    "table_csv",
    "table_latex",
]

ALPHA = 0.05
"""Significance level of the marks (after Holm's correction)."""

PAPER_METRICS = ("precision@3", "recall@3", "f1@3", "precision@5", "recall@5", "f1@5", "mrr", "map")
"""The rows of the paper's Tables 2 and 3, in its order."""

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_PAPER_ROLES = ("baseline", "finetuned")


@attrs.frozen
class PaperTable:
    """
    One of the paper's published tables: its number, the variant it belongs to, values per role.
    """

    number: int
    variant: str
    caption: str
    values: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]
    """(role, ((metric, value), ...)) for "baseline" and "finetuned"."""

    def value(self, role: str, metric: str) -> float | None:
        """
        The published value of one role and metric, or None when the paper has none.
        """
        for r, values in self.values:
            if r == role:
                return dict(values).get(metric)
        return None


@functools.cache
def paper_tables() -> tuple[PaperTable, ...]:
    """
    The paper's Tables 2 and 3, read from the package data ``paper_tables.toml``.
    """
    text = resources.files("llmrec.report").joinpath("paper_tables.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return tuple(
        PaperTable(
            number=int(t["number"]),
            variant=str(t["variant"]),
            caption=str(t["caption"]),
            values=tuple(
                (role, tuple((str(k), float(v)) for k, v in t[role].items())) for role in _PAPER_ROLES
            ),
        )
        for t in data.values()
    )


def paper_table_for(variant: str, number: int | None = None) -> PaperTable | None:
    """
    The paper table a variant reproduces: Table ``number`` when given (the spec's ``variant.paper_table``;
    0: none), else matched by name (profileData50 -> Table 2, profileData60 -> 3).
    """
    for table in paper_tables():
        if (table.number == number) if number is not None else (table.variant == variant):
            return table
    return None


@attrs.frozen
class Column:
    """
    One column of a metric table.
    """

    label: str
    subtitle: str
    letter: str
    """The letter significance marks use for this column ("" for the ideal and paper columns)."""
    role: str
    paper: bool = False


@attrs.frozen
class Cell:
    """
    One formatted value: the number, its interval, the letters of the columns it beats, bold or not.
    """

    value: str
    interval: str = ""
    beats: tuple[str, ...] = ()
    best: bool = False
    note: str = ""
    """A second line (the difference to ours, in a paper column)."""
    number: float | None = None


@attrs.frozen
class MetricTable:
    """
    One variant's Table 2/3 ready for the page, CSV and LaTeX.
    """

    number: int
    name: str
    caption: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]
    tested: tuple[str, ...]
    """The compared pairs ("Fine-tuned vs Baseline"), as the caption names them."""
    paper: PaperTable | None
    confidence: str


def _subtitle(model: ModelScores) -> str:
    return {
        "baseline": "zero-shot",
        "finetuned": "fine-tuned LLM",
        "few_shot": "few-shot",
        "classic": "classic",
        "ideal": "best achievable",
    }.get(model.role, model.role)


def ordered_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
    """
    The paper's rows first in its order (those present), then the others in their given order.
    """
    return (*(n for n in PAPER_METRICS if n in names), *(n for n in names if n not in PAPER_METRICS))


def metric_table(number: int, variant: VariantResults, metric_names: tuple[str, ...]) -> MetricTable:
    """
    The formatted table of one variant, with significance letters and the paper's column when it has one.
    """
    ours = variant.models
    letters: dict[str, str] = {}
    for model in ours:
        if model.role != "ideal" and len(letters) < len(_LETTERS):
            letters[model.label] = _LETTERS[len(letters)]
    paper = paper_table_for(variant.name, variant.paper_table)
    columns = [Column(m.label, _subtitle(m), letters.get(m.label, ""), m.role) for m in ours]
    if paper is not None:
        columns += [
            Column(f"Paper {_paper_name(r)}", f"Table {paper.number}", "", r, True) for r in _PAPER_ROLES
        ]
    beats = _beats(variant)
    rows = []
    for name in ordered_metrics(metric_names):
        values = [_value(m, name) for m in ours]
        competing = [v for v, m in zip(values, ours, strict=True) if m.role != "ideal" and v is not None]
        top = max(competing) if competing else None
        cells = [
            Cell(
                value=_format_metric(v if v is not None else _raw(m, name)),
                interval=_format_interval(m.interval(name)),
                beats=tuple(letters[b] for b in beats.get((m.label, name), ()) if b in letters),
                best=top is not None and v is not None and m.role != "ideal" and math.isclose(v, top),
                number=v,
            )
            for v, m in zip(values, ours, strict=True)
        ]
        if paper is not None:
            for role in _PAPER_ROLES:
                published = paper.value(role, name)
                mine = _role_value(variant, role, name)
                note = ""
                if published is not None and mine is not None:
                    note = f"Δ {mine - published:+.4f}"
                cells.append(Cell(value=_format_metric(published), note=note, number=published))
        rows.append((metric_label(name), tuple(cells)))
    tested = tuple(dict.fromkeys(f"{c.a} vs {c.b}" for c in variant.comparisons))
    return MetricTable(
        number=number,
        name=variant.name,
        caption=f"Table {number}: Comparison of performance metrics between the baseline and fine-tuned "
        f"models - {variant.name}",
        columns=tuple(columns),
        rows=tuple(rows),
        tested=tested,
        paper=paper,
        confidence=f"{variant.confidence:.0%}" if variant.confidence is not None else "",
    )


def _paper_name(role: str) -> str:
    return "Baseline" if role == "baseline" else "Fine-tuned"


def _beats(variant: VariantResults) -> dict[tuple[str, str], list[str]]:
    """
    (column, metric) -> the columns it is significantly better than (Holm p < ALPHA, in that direction).
    """
    out: dict[tuple[str, str], list[str]] = {}
    for c in variant.comparisons:
        if not c.p_holm < ALPHA or c.difference == 0 or math.isnan(c.difference):
            continue
        winner, loser = (c.a, c.b) if c.difference > 0 else (c.b, c.a)
        out.setdefault((winner, c.metric), []).append(loser)
    return out


def _raw(model: ModelScores, name: str) -> float | None:
    return dict(model.metrics).get(name)


def _value(model: ModelScores, name: str) -> float | None:
    """
    A metric's value, None when missing or NaN (such cells never win a row).
    """
    v = _raw(model, name)
    return None if v is None or math.isnan(v) else v


def _role_value(variant: VariantResults, role: str, name: str) -> float | None:
    for m in variant.models:
        if m.role == role:
            return _value(m, name)
    return None


def _format_metric(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "n/a"
    return f"{value:.4f}"


def _format_interval(interval: tuple[float, float] | None) -> str:
    if interval is None:
        return ""
    return f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def table_csv(table: MetricTable) -> str:
    """
    The table as CSV: one row per metric, per column its value and (when known) interval low and high.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["metric"]
    for c in table.columns:
        header.append(c.label)
        if not c.paper:
            header += [f"{c.label} low", f"{c.label} high"]
    writer.writerow(header)
    for label, cells in table.rows:
        row = [label]
        for c, cell in zip(table.columns, cells, strict=True):
            row.append("" if cell.number is None else repr(cell.number))
            if not c.paper:
                low, _, high = cell.interval.strip("[]").partition(", ")
                row += [low, high]
        writer.writerow(row)
    return out.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "—": "---",
    "–": "--",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "λ": r"$\lambda$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def table_latex(table: MetricTable) -> str:
    """
    The table as a LaTeX ``table`` with booktabs rules; best cells bold, significance letters superscript.
    """
    cols = "l" + "r" * len(table.columns)
    heads = " & ".join(_tex(c.label) + (f" ({c.letter})" if c.letter else "") for c in table.columns)
    lines = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_tex(table.caption.partition(': ')[2])}}}",
        f"\\label{{tab:{_tex(table.name)}}}",
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        f"Metric & {heads} \\\\",
        "\\midrule",
    ]
    for label, cells in table.rows:
        parts = []
        for cell in cells:
            text = cell.value
            if cell.best:
                text = f"\\textbf{{{text}}}"
            if cell.beats:
                text += f"$^{{{''.join(cell.beats)}}}$"
            parts.append(text)
        lines.append(f"{_tex(label)} & {' & '.join(parts)} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def letters_of(table: MetricTable) -> Mapping[str, str]:
    """
    Letter -> column label, for the caption's key.
    """
    return {c.letter: c.label for c in table.columns if c.letter}


CsvValue = float | int | str | None
"""A value as a CSV cell holds it: full precision, not the page's rounding; None (or NaN): empty."""


@attrs.frozen
class DataColumn:
    """
    One column of a page table: its header, whether it holds numbers, and its CSV columns (default: one,
    the header; an interval column has two, low and high).
    """

    label: str
    numeric: bool = False
    parts: tuple[str, ...] = ()


@attrs.frozen
class Entry:
    """
    One cell: the text the page shows (and the LaTeX prints) and the values its CSV columns hold
    (none: the text itself).
    """

    text: str
    values: tuple[CsvValue, ...] = ()


@attrs.frozen
class DataTable:
    """
    A table of the page other than Tables 2-3 (funnel, grounding, comparisons, cost, ...), ready for its
    CSV and LaTeX files ``tables/<stem>.csv`` and ``tables/<stem>.tex``.
    """

    stem: str
    caption: str
    columns: tuple[DataColumn, ...]
    rows: tuple[tuple[Entry, ...], ...]
    csv_header: tuple[str, ...] = ()
    """When set, the CSV is ``csv_header`` and ``csv_rows`` (a tidy, one-number-a-row form of a table whose
    page cells hold several numbers each) rather than the page's rows."""
    csv_rows: tuple[tuple[CsvValue, ...], ...] = ()


def file_stem(*parts: str) -> str:
    """
    A readable file name stem from its parts ("profileData50", "funnel" -> "profileData50-funnel"):
    letters, digits, ".", "_" and "-" kept, any other run of characters one "-".
    """
    out = []
    for part in parts:
        cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else " " for ch in part)
        out.append("-".join(cleaned.split()))
    return "-".join(p for p in out if p) or "table"


def _csv_value(value: CsvValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def data_table_csv(table: DataTable) -> str:
    """
    The table as CSV: a header row, then one row per page row; numbers at full precision.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if table.csv_header:
        writer.writerow(table.csv_header)
        writer.writerows([_csv_value(v) for v in row] for row in table.csv_rows)
        return out.getvalue()
    writer.writerow([p for c in table.columns for p in (c.parts or (c.label,))])
    for row in table.rows:
        cells: list[str] = []
        for c, entry in zip(table.columns, row, strict=True):
            width = len(c.parts) or 1
            if entry.values:
                cells += [_csv_value(v) for v in entry.values[:width]]
                cells += [""] * (width - len(entry.values))
            else:
                cells += [entry.text] + [""] * (width - 1)
        writer.writerow(cells)
    return out.getvalue()


def data_table_latex(table: DataTable) -> str:
    """
    The table as a LaTeX ``table`` with booktabs rules, its cells as the page shows them.
    """
    cols = "".join("r" if c.numeric else "l" for c in table.columns)
    lines = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_tex(table.caption)}}}",
        f"\\label{{tab:{table.stem}}}",
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        " & ".join(_tex(c.label) for c in table.columns) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join(_tex(e.text) for e in row) + " \\\\" for row in table.rows]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)
