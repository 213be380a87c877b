"""
What a run directory holds, stage by stage, for ``llmrec status RUN_DIR``.

Reads the store's files without taking its lock (a running run can be watched): every stage folder
is done (its record is there), or partial (k of n answers stored, a job or batch submitted).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmrec.store import SAFE_NAME as _SAFE
from llmrec.store import stage_folders

__all__ = ["describe_run"]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _answers(path: Path) -> tuple[int, int]:
    answered: set[str] = set()
    sent: set[str] = set()
    if path.exists():
        for line in path.read_bytes().split(b"\n"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            (answered if r.get("t") == "answer" else sent).add(str(r.get("fp")))
    return len(answered), len(sent - answered)


def describe_run(root: Path) -> Iterator[str]:
    """
    One line per stage folder: state, stage, key, time, counts, job ids and spend.
    """
    yield f"{'state':<16} {'stage':<44} {'key':<20} {'seconds':>9}  details"
    total_spend = 0.0
    present: set[str] = set()
    for folder in stage_folders(root):
        stage, _, key = folder.name.rpartition("-")
        present.add(stage)
        record = _json(folder / "record.json")
        details: list[str] = []
        job = _json(folder / "job.json")
        if isinstance(job, dict) and job.get("id"):
            details.append(f"job {job['id']}")
        batches = _json(folder / "batches.json")
        if isinstance(batches, dict) and batches.get("open"):
            details.append("batches " + ", ".join(str(b["id"]) for b in batches["open"]))
        if isinstance(record, dict):
            counts = record.get("counts", {})
            details += [f"{k} {v:,}" for k, v in counts.items()]
            details += [f"{k} {v}" for k, v in record.get("notes", {}).items() if k not in ("job",)]
            spend = float(record.get("spend_usd", 0.0))
            total_spend += spend
            if spend:
                details.append(f"${spend:.4f}")
            state = "done"
            seconds = f"{float(record.get('seconds', 0.0)):.2f}"
        else:
            plan = _json(folder / "plan.json")
            answered, in_flight = _answers(folder / "answers.jsonl")
            if isinstance(plan, dict):
                state = f"partial {answered}/{plan.get('total', '?')}"
                if in_flight:
                    details.append(f"{in_flight} in flight at the stop (sent again on resume)")
            else:
                state = "partial"
            seconds = "-"
        yield f"{state:<16} {stage:<44} {key:<20} {seconds:>9}  {'; '.join(details)}".rstrip()
    expected = _json(root / "expected.json")
    for name in expected if isinstance(expected, list) else []:
        folder_name = _SAFE.sub("_", str(name))
        if folder_name not in present:
            yield f"{'missing':<16} {folder_name:<44} {'-':<20} {'-':>9}"
    last = _json(root / "last-run.json")
    if isinstance(last, dict) and "total_seconds" in last:
        yield (
            f"last run: started {last.get('started', '?')}, {float(last['total_seconds']):.2f} s in all, "
            f"{float(last.get('report_seconds', 0.0)):.2f} s of them writing the manifest, cost and report "
            "after the stages"
        )
    yield f"spend so far: ${total_spend:.4f}"
