"""
``llmrec report``: re-render report folders from stored results, without a provider or the dataset.

A source is either a report folder written by ``llmrec run`` (``results.json``, ``predictions.jsonl``
and ``manifest.json``) or a run directory (``runs/<name>/``), whose newest finished evaluate stage
(``stages/evaluate-<key>/results.json`` and ``predictions.jsonl``) is read; a run directory has no
manifest unless ``runs/<name>/manifest.json`` exists. This module does the file I/O; the rendering
stays the pure functions of ``render``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from llmrec.codec import check_schema
from llmrec.errors import DataError
from llmrec.report.render import RunSummary, render_index, report_files
from llmrec.results import SCHEMA_VERSION, Prediction, Results
from llmrec.stages.evaluate import decode_predictions
from llmrec.store import atomic_write

__all__ = ["ReportSource", "read_source", "rebuild_reports"]


@attrs.frozen
class ReportSource:
    """
    What a report is rendered from: results, the manifest when known, the predictions.
    """

    path: Path
    results: Results
    manifest: dict[str, Any] | None
    predictions: tuple[Prediction, ...]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="surrogatepass"))
    except ValueError as exc:
        msg = f"expected JSON ({exc})"
        raise DataError(msg, path=str(path)) from None


def _evaluate_folder(run_dir: Path) -> Path:
    found = [p.parent for p in (run_dir / "stages").glob("evaluate*/results.json")]
    if not found:
        msg = "expected a finished evaluate stage (stages/evaluate-<key>/results.json)"
        raise DataError(msg, path=str(run_dir))
    return max(found, key=lambda p: ((p / "results.json").stat().st_mtime_ns, p.name))


def read_source(path: Path) -> ReportSource:
    """
    Read one report folder or run directory.

    Raises:
        DataError: when the folder holds neither a results.json nor a finished evaluate stage.
    """
    if (path / "results.json").is_file():
        folder = path
        manifest_path = path / "manifest.json"
    elif (path / "stages").is_dir():
        folder = _evaluate_folder(path)
        manifest_path = path / "manifest.json"
    else:
        msg = "expected a report folder (results.json) or a run directory (stages/)"
        raise DataError(msg, path=str(path))
    data = _json(folder / "results.json")
    if isinstance(data, dict):  # an unknown schema is refused naming this file
        check_schema(data, SCHEMA_VERSION, str(folder / "results.json"))
    try:
        results = Results.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"expected a results file ({exc!r})"
        raise DataError(msg, path=str(folder / "results.json")) from None
    raw = folder / "predictions.jsonl"
    predictions = decode_predictions(raw.read_bytes(), str(raw)) if raw.is_file() else ()
    manifest = _json(manifest_path) if manifest_path.is_file() else None
    return ReportSource(path, results, manifest, predictions)


def rebuild_reports(sources: Sequence[Path], out: Path) -> list[Path]:
    """
    Render each source into ``out/<experiment>/`` and write ``out/index.html`` listing them.

    A report folder's own results.json, predictions.jsonl and manifest.json are copied along (or kept,
    when the source is that folder already), so the new folder can be rebuilt again.

    Returns:
        The pages written: each report's index.html, then the index.
    """
    read = [read_source(p) for p in sources]
    names = [s.results.experiment for s in read]
    dupes = {n for n in names if names.count(n) > 1}
    written: list[Path] = []
    summaries = []
    for i, source in enumerate(read):
        name = source.results.experiment + (f"-{i + 1}" if source.results.experiment in dupes else "")
        folder = out / name
        files = report_files(source.results, manifest=source.manifest, predictions=source.predictions)
        files["results.json"] = json.dumps(source.results.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if source.manifest is not None:
            files["manifest.json"] = json.dumps(source.manifest, indent=2, ensure_ascii=False) + "\n"
        raw = _predictions_file(source.path)
        if raw is not None and raw.resolve() != (folder / "predictions.jsonl").resolve():
            atomic_write(folder / "predictions.jsonl", raw.read_bytes())
        for filename, content in files.items():
            atomic_write(folder / filename, content.encode("utf-8", "surrogatepass"))
        written.append(folder / "index.html")
        summaries.append(RunSummary(f"{name}/index.html", source.results, source.manifest))
    index = out / "index.html"
    atomic_write(index, render_index(summaries).encode("utf-8"))
    written.append(index)
    return written


def _predictions_file(path: Path) -> Path | None:
    if (path / "results.json").is_file():
        found = path / "predictions.jsonl"
    else:
        found = _evaluate_folder(path) / "predictions.jsonl"
    return found if found.is_file() else None
