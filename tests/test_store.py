"""
The run store: atomic writes, logs that survive kills, the run lock, temporary-file cleanup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from llmrec.store import (
    AppendLog,
    DiskRunStore,
    MemoryRunStore,
    RunLockedError,
    StageRecord,
    StoreError,
    remove_stale_temporaries,
)


def _record(key: str = "k") -> StageRecord:
    return StageRecord(stage="s", kind="s", key=key, seconds=0.1, finished="2026-12-01T00:00:00")


def test_stage_parts_round_trip_on_disk_and_in_memory(tmp_path):
    """JSON, arrays and bytes come back as written, and the record marks the stage done."""
    disk = DiskRunStore(tmp_path / "run")
    for store in (disk, MemoryRunStore()):
        folder = store.stage("sample", "abc")
        assert folder.record is None
        folder.write_json("meta", {"a": [1, 2], "b": "é"})
        folder.write_arrays("x", {"v": np.arange(5, dtype=np.int32)})
        folder.write_bytes("f.jsonl", b"line\n")
        folder.finish(_record("abc"))

        again = store.stage("sample", "abc")
        assert again.read_json("meta") == {"a": [1, 2], "b": "é"}
        arrays = again.read_arrays("x")
        assert arrays is not None
        assert arrays["v"].tolist() == [0, 1, 2, 3, 4]
        assert again.read_bytes("f.jsonl") == b"line\n"
        assert again.record is not None
        assert [r.key for r in store.records()] == ["abc"]
    disk.close()


def test_torn_last_record_is_cut_off_on_open(tmp_path):
    """A record without its newline (a kill mid-write) is removed, and appends continue cleanly."""
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3, "te')
    log = AppendLog(path)

    assert [r["n"] for r in log.records] == [1, 2]
    assert log.repaired == len(b'{"n": 3, "te')
    log.append({"n": 4})
    log.close()
    assert path.read_bytes() == b'{"n": 1}\n{"n": 2}\n{"n": 4}\n'


def test_torn_utf8_tail_is_cut_off(tmp_path):
    """A record cut inside a multi-byte character is cut off like any torn tail."""
    path = tmp_path / "answers.jsonl"
    full = json.dumps({"text": "Amélie"}, ensure_ascii=False).encode("utf-8")
    cut = full.index("é".encode()) + 1
    path.write_bytes(b'{"n": 1}\n' + full[:cut])
    log = AppendLog(path)

    assert log.records == [{"n": 1}]
    assert path.read_bytes() == b'{"n": 1}\n'


def test_damaged_record_before_the_tail_stops_with_file_and_offset(tmp_path):
    """An undecodable record followed by good ones is refused, naming the file and byte offset."""
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"n": 1}\n{oops\n{"n": 3}\n')

    with pytest.raises(StoreError, match=r"answers.jsonl: record at byte 9 cannot be read"):
        AppendLog(path)
    assert path.read_bytes() == b'{"n": 1}\n{oops\n{"n": 3}\n'


def test_lone_surrogates_are_stored_losslessly(tmp_path):
    """A text that is not valid Unicode (a lone surrogate) is stored and read back as it was."""
    path = tmp_path / "a.jsonl"
    log = AppendLog(path)
    log.append({"text": "bad \ud800 text"})
    log.close()

    assert AppendLog(path).records == [{"text": "bad \ud800 text"}]
    path.read_bytes().decode("utf-8")  # the file itself stays valid UTF-8


_HOLD = """
import sys, time
from llmrec.store import DiskRunStore
store = DiskRunStore(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_second_process_is_refused_while_the_first_holds_the_run(tmp_path):
    """A run directory held by a live process refuses another; once that process dies it is free."""
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"in use by another llmrec run \(pid {holder.pid} on "):
            DiskRunStore(run)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    store = DiskRunStore(run)  # a lock left by a dead process is free by construction
    store.close()


def test_temporary_files_of_interrupted_writes_are_removed_on_open(tmp_path):
    """A .tmp file left by a killed atomic write (in a stage, or in the run folder itself) is cleaned
    up when the store is next opened."""
    stale = tmp_path / "run" / "stages" / "sample-abc" / ".sample.npz.123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    (tmp_path / "run" / ".expected.json.123.tmp").write_bytes(b"half")

    store = DiskRunStore(tmp_path / "run")
    time.sleep(0)

    assert store.cleaned == 2
    assert not stale.exists()
    assert not (tmp_path / "run" / ".expected.json.123.tmp").exists()
    store.close()


def test_stale_temporaries_of_a_report_folder_are_removed_unless_their_writer_lives(tmp_path):
    """In a folder no lock guards, a writer's temporary is removed only once its process is gone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "explorer").mkdir()
    gone = [tmp_path / f".index.html.{dead.pid}.tmp", tmp_path / "explorer" / f".a.json.{dead.pid}.tmp"]
    alive = tmp_path / f".results.json.{os.getppid()}.tmp"
    other = tmp_path / ".notes.tmp"  # not an atomic write's name: not ours to remove
    for path in [*gone, alive, other]:
        path.write_bytes(b"half")

    assert remove_stale_temporaries(tmp_path) == 2
    assert [p.exists() for p in gone] == [False, False]
    assert alive.exists()
    assert other.exists()


def test_unknown_schema_versions_are_refused_with_a_clear_message(tmp_path, capsys):
    """A stage record, results.json or a prediction of a schema this llmrec does not know is refused,
    naming the document and both versions (never read as if it were the known shape)."""
    from llmrec import cli
    from llmrec.results import PREDICTIONS_SCHEMA_VERSION, SCHEMA_VERSION, Results
    from llmrec.stages.evaluate import decode_predictions

    store = DiskRunStore(tmp_path / "run")
    folder = store.stage("sample", "abc")
    folder.finish(_record("abc"))
    path = tmp_path / "run" / "stages" / "sample-abc" / "record.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    path.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(StoreError) as record:
        _ = store.stage("sample", "abc").record
    store.close()
    assert str(record.value) == (
        f"{path} has schema_version 99; this llmrec reads version 1 "
        "(rerun the experiment, or use the llmrec version that wrote it)"
    )

    results = Results(experiment="x", title="t", metric_names=(), variants=()).to_dict()
    with pytest.raises(
        StoreError, match=rf"^results.json has schema_version 99; this llmrec reads version {SCHEMA_VERSION} "
    ):
        Results.from_dict({**results, "schema_version": 99})
    with pytest.raises(StoreError, match=r"^results.json has schema_version None; "):
        Results.from_dict({k: v for k, v in results.items() if k != "schema_version"})
    with pytest.raises(
        StoreError,
        match=rf"^p.jsonl has schema_version 7; this llmrec reads version {PREDICTIONS_SCHEMA_VERSION} ",
    ):
        decode_predictions(b'{"schema_version": 7}\n', "p.jsonl")

    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({**results, "schema_version": 99}))
    code = cli.main(["report", str(report), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        f"error: {report / 'results.json'} has schema_version 99; this llmrec reads version {SCHEMA_VERSION} "
        "(rerun the experiment, or use the llmrec version that wrote it)"
    ]


def test_status_lists_done_partial_and_missing_stages(tmp_path):
    """`llmrec status`: a done stage with its key, seconds, counts, job id and spend; a partial one with
    k of n and the requests in flight at the stop; the stages not started as missing; the total spend."""
    from llmrec.status import describe_run

    root = tmp_path / "run"
    store = DiskRunStore(root)
    done = store.stage("finetune/v1", "k1")
    done.write_json("job", {"id": "ftjob-123", "how": "submitted"})
    done.finish(
        StageRecord(
            stage="finetune/v1",
            kind="finetune",
            key="k1",
            seconds=12.5,
            finished="2026-12-01T00:00:00",
            counts=(("trained_tokens", 12345),),
            notes=(("job", "ftjob-123"), ("model", "ft:m:1")),
            spend_usd=0.25,
        )
    )
    partial = store.stage("infer/v1/baseline", "k2")
    partial.write_json("plan", {"total": 5})
    log = partial.log("answers")
    for fp in ("a", "b", "c"):
        log.append({"t": "sent", "fp": fp})
        log.append({"t": "answer", "fp": fp, "result": {}})
    log.append({"t": "sent", "fp": "d"})
    store.close()
    (root / "expected.json").write_text(json.dumps(["finetune/v1", "infer/v1/baseline", "evaluate"]))

    lines = list(describe_run(root))

    assert lines[0].split() == ["state", "stage", "key", "seconds", "details"]
    assert lines[1].split() == [
        "done", "finetune_v1", "k1", "12.50", "job", "ftjob-123;", "trained_tokens", "12,345;", "model",
        "ft:m:1;", "$0.2500",
    ]  # fmt: skip
    assert lines[2].split(None, 5) == [
        "partial", "3/5", "infer_v1_baseline", "k2", "-", "1 in flight at the stop (sent again on resume)"
    ]  # fmt: skip
    assert lines[3].split() == ["missing", "evaluate", "-", "-"]
    assert lines[-1] == "spend so far: $0.2500"
    assert len(lines) == 5
