"""
Regenerate a committed report folder (``reports/demo``) so that it changes only when its results do.

``python -m llmrec.report.demo [SPEC [OUT]]`` (defaults ``specs/demo.toml`` and ``reports/demo``) runs
the spec with a fresh run store in a temporary folder, as ``llmrec run SPEC --out DIR --runs
"$(mktemp -d)"`` does. A fresh run records new stage timings and finish times in its manifest, so its
folder always differs from the committed one. When the new results and predictions are OUT's byte for
byte and the manifests differ only in those times, OUT keeps its times and only its rendered files
are rewritten (none when they render as before); otherwise the new folder replaces OUT.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmrec.errors import DataError
from llmrec.report.rebuild import rebuild_reports

__all__ = ["main", "refresh_report"]

_STAGE_TIMES = ("seconds", "finished")


def _timeless(manifest: dict[str, Any]) -> dict[str, Any]:
    """
    The manifest without what a fresh run of the same computation changes: times and stage timings.
    """
    out = {k: v for k, v in manifest.items() if k != "finished"}
    stages = manifest.get("stages")
    if isinstance(stages, list):
        out["stages"] = [
            {k: v for k, v in s.items() if k not in _STAGE_TIMES} if isinstance(s, dict) else s
            for s in stages
        ]
    return out


def _with_times(manifest: dict[str, Any], times: dict[str, Any]) -> dict[str, Any]:
    """
    ``manifest`` with the finish time and stage timings of ``times`` (whose stages are the same).
    """
    out = dict(manifest, finished=times.get("finished"))
    out["stages"] = [
        {**new, **{k: old[k] for k in _STAGE_TIMES if k in old}}
        for new, old in zip(manifest.get("stages", []), times.get("stages", []), strict=True)
    ]
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def _retimed(fresh: Path, out: Path, work: Path) -> Path | None:
    """
    When ``fresh`` holds the same results and predictions as ``out`` and a manifest that differs only in
    its times: ``fresh`` re-rendered with ``out``'s times (what ``llmrec report`` would make of ``out``
    with this llmrec); otherwise None.
    """
    old, new = _manifest(out), _manifest(fresh)
    if old is None or new is None or _timeless(old) != _timeless(new):
        return None
    for name in ("results.json", "predictions.jsonl"):
        if not (out / name).is_file() or (out / name).read_bytes() != (fresh / name).read_bytes():
            return None
    check = work / "check"
    shutil.copytree(fresh, check)
    text = json.dumps(_with_times(new, old), indent=2, ensure_ascii=False) + "\n"
    (check / "manifest.json").write_text(text, encoding="utf-8")
    return rebuild_reports([check], work / "checked")[0].parent


def refresh_report(spec: str, out: Path) -> bool:
    """
    Run ``spec`` with a fresh run store and refresh ``out`` with its report folder.

    When the run's results, predictions and manifest equal those in ``out`` but for the manifest's
    times, ``out`` keeps its times and only re-rendered files change (none, if this llmrec renders
    them as before); otherwise ``out`` is replaced by the new folder, times and all.

    Args:
        spec: the spec file to run.
        out: the report folder to refresh; absent, empty or a report folder (it holds results.json).

    Returns:
        True when a file in ``out`` was written, False when ``out`` was left as it was.

    Raises:
        DataError: when ``out`` holds files but no results.json (it is not a report folder), or the run
            fails (its error is printed first).
    """
    if out.exists() and any(out.iterdir()) and not (out / "results.json").is_file():
        msg = "expected a report folder (results.json) or an empty folder to write the report into"
        raise DataError(msg, path=str(out))
    from llmrec.cli import main

    with tempfile.TemporaryDirectory(prefix="llmrec-refresh-") as tmp:
        work = Path(tmp)
        fresh = work / "report"
        code = main(["run", spec, "--out", str(fresh), "--runs", str(work / "runs"), "--quiet"])
        if code != 0:
            msg = f"llmrec run {spec} failed (exit code {code})"
            raise DataError(msg, path=spec)
        source = (_retimed(fresh, out, work) if out.is_dir() else None) or fresh
        if out.is_dir() and _files(source) == _files(out):
            return False
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(source, out)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """
    ``python -m llmrec.report.demo [SPEC [OUT]]``: refresh OUT, print whether it changed.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    spec = args[0] if args else "specs/demo.toml"
    out = Path(args[1] if len(args) > 1 else "reports/demo")
    try:
        changed = refresh_report(spec, out)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {'rewritten' if changed else 'unchanged (the same results; only the run times differ)'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
