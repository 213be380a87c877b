"""
Kill a real ``llmrec run`` (SIGKILL, through failpoints) at every stage boundary and inside writes,
rerun it, and get byte-identical results with no stored answer asked for again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

SPEC = """
[experiment]
name = "kill"
seed = 3

[dataset.synthetic]
users = 700
movies = 150
mean_ratings = 40

[sampling]
neighbors = 40

[finetune]
base_model = "fake-llm"

[evaluation]
baselines = ["popular", "item_knn"]
resamples = 40
permutations = 40
"""


def _run(root: Path, runs: str, out: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LLMREC_FAILPOINT"}
    if failpoint:
        env["LLMREC_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "llmrec.cli", "run", "spec.toml", "--runs", runs, "--out", out, "--quiet"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _rest_of_stderr(proc: subprocess.Popen[str], *, group: bool, timeout: float = 120) -> str:
    """The rest of the process's stderr once it has exited; kills it (or its group) after ``timeout``."""
    assert proc.stderr is not None
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if reader.is_alive() or proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        proc.wait()
        pytest.fail(f"the run did not end within {timeout} s of the signal")
    proc.stderr.close()
    return rest[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its folder and its results.json bytes."""
    root = tmp_path_factory.mktemp("kill")
    (root / "spec.toml").write_text(SPEC, encoding="utf-8")
    done = _run(root, "ref-runs", "ref-out")
    assert done.returncode == 0, done.stderr
    return root, (root / "ref-out" / "results.json").read_bytes()


def _answers(run_dir: Path) -> tuple[Counter[str], Counter[str]]:
    """
    How often each request was sent to the provider and how often an answer was stored, run-wide
    (an answer copied from another stage of the run was not sent).
    """
    sent: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for log in run_dir.glob("stages/infer_*/answers.jsonl"):
        for line in log.read_bytes().split(b"\n"):
            try:
                record = json.loads(line.decode("utf-8"))
            except ValueError:
                continue  # the torn tail a kill left (the rerun cuts it off)
            if record["t"] == "sent":
                sent[record["fp"]] += 1
            elif not record.get("copied"):
                answered[record["fp"]] += 1
    return sent, answered


KILLS = [
    ("stage-done:load:1", "load"),
    ("stage-done:sample:1", "sample"),
    ("stage-done:ground_truth:2", "ground_truth"),
    ("stage-done:training_files:1", "training_files"),
    ("finetune-created:1", None),
    ("stage-done:finetune:1", "finetune"),
    ("answer:17", None),
    ("stage-done:infer:3", "infer"),
    ("stage-done:baselines:1", "baselines"),
    ("stage-done:evaluate:1", "evaluate"),
    ("before-rename:1", None),  # expected.json, in the run folder itself
    ("before-rename:4", None),  # a stage's part
    ("log-torn:30", None),
    ("log-torn-utf8:5", None),
]


@pytest.mark.parametrize(("failpoint", "kind"), KILLS, ids=[k for k, _ in KILLS])
def test_kill_and_rerun_gives_identical_results(reference, failpoint, kind):
    """SIGKILL at a failpoint leaves a consistent store; the rerun finishes with the same bytes."""
    root, expected = reference
    tag = failpoint.replace(":", "_").replace("*", "any")
    runs, out = f"runs-{tag}", f"out-{tag}"

    killed = _run(root, runs, out, failpoint)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = root / runs / "kill"
    records = [json.loads(p.read_text()) for p in run_dir.glob("stages/*/record.json")]
    if kind is not None:
        assert kind in {r["kind"] for r in records}
    assert not (root / out / "results.json").exists()
    if failpoint.startswith("answer:"):
        _, answered = _answers(run_dir)
        assert sum(answered.values()) == 17
        status = subprocess.run(
            [sys.executable, "-m", "llmrec.cli", "status", str(run_dir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "partial 17/" in status  # the infer stage the kill interrupted
        assert [line.split()[1] for line in status.splitlines() if line.startswith("missing")][
            -1
        ] == "evaluate"
        assert "job ftjob-fake-" in status  # the fine-tunes, done, with their job ids
    if failpoint.startswith("finetune-created"):
        jobs = list((run_dir / "fake-service" / "jobs").glob("*.json"))
        assert len(jobs) == 1
        assert not list(run_dir.glob("stages/finetune_*/job.json"))
    if failpoint.startswith("before-rename"):  # the temporary file was written, not yet renamed
        assert len(list(run_dir.rglob(".*.tmp"))) == 1
    if failpoint.startswith("log-torn"):  # one log ends in half a record
        torn = [p for p in run_dir.rglob("*.jsonl") if not p.read_bytes().endswith(b"\n")]
        assert len(torn) == 1
        tail = torn[0].read_bytes().rsplit(b"\n", 1)[-1]
        assert tail.startswith(b"{")
        if failpoint.startswith("log-torn-utf8"):  # cut inside a multi-byte character
            with pytest.raises(UnicodeDecodeError):
                tail.decode("utf-8")
    before = _answers(run_dir)[1]
    in_flight = sum(int(n) for n in re.findall(r"(\d+) in flight at the stop", _status(run_dir)))

    rerun = _run(root, runs, out)

    assert rerun.returncode == 0, rerun.stderr
    assert (root / out / "results.json").read_bytes() == expected
    sent, answered = _answers(run_dir)
    assert set(answered.values()) == {1}  # every request answered exactly once
    # a request whose answer was stored before the kill is never sent again; at most one (the fake's
    # concurrency) was in flight at the kill and is sent twice
    assert all(sent[fp] == 1 for fp in before)
    assert sum(1 for n in sent.values() if n > 1) <= 1
    # `llmrec status` counted the requests in flight at the kill; the rerun sent exactly those again
    # and says so
    last_run = json.loads((run_dir / "last-run.json").read_text())
    assert last_run["requests_sent_again_after_a_stop"] == in_flight
    assert sum(1 for n in sent.values() if n > 1) == in_flight
    assert list(run_dir.rglob(".*.tmp")) == []  # temporaries of the killed write were removed
    if failpoint.startswith("finetune-created"):
        # the first variant's job was found by its idempotency key, not submitted again
        assert len(list((run_dir / "fake-service" / "jobs").glob("*.json"))) == 2
    if failpoint.startswith("log-torn"):
        assert (
            "partial"
            not in subprocess.run(
                [sys.executable, "-m", "llmrec.cli", "status", str(run_dir)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )


def _status(run_dir: Path) -> str:
    """What `llmrec status` prints ("" for a run folder that has no stage yet)."""
    if not (run_dir / "stages").is_dir():
        return ""
    return subprocess.run(
        [sys.executable, "-m", "llmrec.cli", "status", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_two_runs_on_one_store_one_runs_one_refuses(reference):
    """While one run holds the run directory, a second exits 1 naming the holder and writes nothing."""
    root, expected = reference
    env = {**os.environ, "LLMREC_FAILPOINT": "nothing:1"}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from llmrec.store import DiskRunStore; "
            "s = DiskRunStore(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(root / "runs-two" / "kill"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        refused = _run(root, "runs-two", "out-two")
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    assert refused.returncode == 1
    assert f"in use by another llmrec run (pid {holder.pid}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (root / "out-two").exists()
    assert _run(root, "runs-two", "out-two").returncode == 0
    assert (root / "out-two" / "results.json").read_bytes() == expected


def test_two_real_runs_on_one_store_one_runs_one_refuses(reference):
    """Two `llmrec run`s on one run folder: while the first is under way (frozen with SIGSTOP so the
    test does not race it), the second exits 1 naming the first's pid, and a second with --fresh
    deletes nothing; the first then finishes with the reference bytes."""
    root, expected = reference
    command = [sys.executable, "-m", "llmrec.cli", "run", "spec.toml", "--runs", "runs-real", "--out"]
    first = subprocess.Popen([*command, "out-real"], cwd=root, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        for line in first.stderr:  # the lock is taken before any stage runs
            if "ground truth" in line:
                break
        first.send_signal(signal.SIGSTOP)
        held = sorted(p.name for p in (root / "runs-real" / "kill" / "stages").iterdir())
        second = _run(root, "runs-real", "out-second")
        fresh = subprocess.run(
            [*command, "out-fresh", "--quiet", "--fresh"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert sorted(p.name for p in (root / "runs-real" / "kill" / "stages").iterdir()) == held
    finally:
        first.send_signal(signal.SIGCONT)
    err = _rest_of_stderr(first, group=False)

    assert first.returncode == 0, err
    assert (root / "out-real" / "results.json").read_bytes() == expected
    for refused in (second, fresh):
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: runs-real/kill is in use by another llmrec run ")
        assert f"(pid {first.pid} on " in refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (root / "out-second").exists()
    assert not (root / "out-fresh").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_exit_with_one_line(reference, sig, code):
    """Ctrl-C and SIGTERM mid-run exit 130 / 143 with one error line and no traceback."""
    root, _ = reference
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmrec.cli",
            "run",
            "spec.toml",
            "--runs",
            f"runs-sig{code}",
            "--out",
            f"o{code}",
        ],
        cwd=root,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until the run is under way
        if "ground truth" in line:
            break
    proc.send_signal(sig)
    err = _rest_of_stderr(proc, group=False)

    assert proc.returncode == code
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if "error:" in line
    ]
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_start_up_prints_one_line(tmp_path, sig, code):
    """Ctrl-C or SIGTERM while the `llmrec` command is still importing llmrec (a second or more):
    one error line and its exit code, no traceback (the console script handles signals first)."""
    script = Path(sys.executable).parent / "llmrec"
    assert script.is_file(), "the llmrec console script is installed with the package"
    proc = subprocess.Popen(
        [str(script), "validate", "nothing.toml"], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    # the interpreter's own start (before any of llmrec's code runs) is out of reach: wait until the
    # console script has caught SIGTERM, the first thing it does, then signal while llmrec imports
    caught = 0
    deadline = time.monotonic() + 30
    while not caught & (1 << (signal.SIGTERM - 1)) and time.monotonic() < deadline:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    proc.send_signal(sig)
    err = _rest_of_stderr(proc, group=False)

    assert caught & (1 << (signal.SIGTERM - 1))
    assert proc.returncode == code
    assert "Traceback" not in err
    assert err == f"error: {'interrupted' if code == 130 else 'terminated'} while starting; nothing was run\n"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_the_group_during_parallel_ground_truth_prints_one_line(tmp_path, sig, code):
    """Ctrl-C (sent to the whole process group, as a terminal does) while forked workers derive the
    ground truth: one error line, no worker tracebacks, exit 130 (143 for SIGTERM)."""
    (tmp_path / "spec.toml").write_text(
        "[experiment]\nname = 'par'\n[dataset.synthetic]\nusers = 6000\nmovies = 400\n"
        "[finetune]\nbase_model = 'fake-llm'\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmrec.cli",
            "run",
            "spec.toml",
            "--workers",
            "2",
            "--runs",
            "r",
            "--out",
            "o",
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "ground truth: 0/" in line:
            break
    time.sleep(1.0)  # the pool's workers are forked and busy by now
    os.killpg(proc.pid, sig)
    # the parent must end by itself (a multiprocessing.Pool could deadlock here once a worker was
    # killed holding its queue's lock)
    err = _rest_of_stderr(proc, group=True)

    assert proc.returncode == code
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
