"""
The shell: arguments, environment, files, clock, the real provider, exit codes.

Exit codes: 0 success; 2 bad input (spec, data, arguments); 1 provider or runtime failure;
130 interrupted. Errors print one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from llmrec.data import Dataset
from llmrec.errors import DataError, LlmrecError, ProviderError, SpecError, SpecProblem
from llmrec.pipeline import ExperimentOutcome, run_stages
from llmrec.prompts import system_text
from llmrec.providers.base import Backend, as_backend
from llmrec.providers.fake import FakeProvider
from llmrec.report import report_files
from llmrec.spec import Spec, parse_spec, spec_hash
from llmrec.stages.evaluate import encode_predictions
from llmrec.status import describe_run
from llmrec.store import DiskRunStore, RunLockedError, StoreError, atomic_write

__all__ = ["main"]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class _Terminated(BaseException):
    """
    SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT.
    """


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def _version() -> str:
    try:
        return metadata.version("llmrec")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="Run, reproduce and extend 'LLM as recommender' experiments from a TOML spec.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an experiment and publish its report")
    run.add_argument("spec", help="the experiment spec (TOML)")
    run.add_argument("--out", help="report folder (default: reports/<experiment name>)")
    run.add_argument("--runs", default="runs", help="folder for run state (default: runs)")
    run.add_argument(
        "--fresh", action="store_true", help="ignore stored answers and start the run state over"
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument(
        "--allow-small",
        action="store_true",
        help="run a paid provider even when a variant has fewer than evaluation.min_test_users test users",
    )

    status = sub.add_parser(
        "status", help="list a run directory's stages: done, partial, their keys and counts"
    )
    status.add_argument("run_dir", help="the run directory (runs/<experiment name>)")

    report = sub.add_parser(
        "report", help="re-render reports and an index page from stored results (no provider, no dataset)"
    )
    report.add_argument("sources", nargs="+", metavar="RUN_DIR", help="report folders or run directories")
    report.add_argument(
        "--out", default="reports", help="folder for <experiment>/ and index.html (default: reports)"
    )

    validate = sub.add_parser("validate", help="check a spec without running it")
    validate.add_argument("spec", help="the experiment spec (TOML)")
    validate.add_argument("--check-inputs", action="store_true", help="also check that data paths exist")

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = data_sub.add_parser("synth", help="write synthetic Netflix-format data at any scale")
    synth.add_argument("--ratings", type=_positive_int, required=True, help="number of ratings to write")
    synth.add_argument("--out", required=True, help="folder for combined_data_*.txt and movie_titles.csv")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value <= 0:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line; returns the exit code (the console script exits with it).
    """
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        if args.command == "validate":
            return _validate(args.spec, check_inputs=args.check_inputs)
        if args.command == "data":
            return _synth(args.ratings, args.out, args.seed)
        if args.command == "status":
            return _status(args.run_dir)
        if args.command == "report":
            return _report(args.sources, args.out)
        return _run(args)
    except (SpecError, DataError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except ProviderError as exc:
        _error(f"provider failed: {exc}; everything answered so far is kept in the run folder")
        return EXIT_RUNTIME
    except (RunLockedError, StoreError, LlmrecError) as exc:
        _error(str(exc))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        _error("interrupted; everything computed and answered so far is kept in the run folder")
        return EXIT_INTERRUPTED
    except _Terminated:
        _error("terminated; everything computed and answered so far is kept in the run folder")
        return EXIT_TERMINATED
    except OSError as exc:
        _error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        return EXIT_RUNTIME
    finally:
        signal.signal(signal.SIGTERM, previous)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _load_spec(path: str) -> tuple[Spec, str]:
    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, (_problem("", "expected an existing spec file"),)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            path, (_problem("", f"expected UTF-8 text ({exc.reason} at byte {exc.start})"),)
        ) from None
    return parse_spec(text, source=path, base_dir=str(spec_path.parent)), text


def _problem(path: str, expected: str) -> SpecProblem:
    return SpecProblem(path, expected)


def _validate(path: str, *, check_inputs: bool) -> int:
    spec, _ = _load_spec(path)
    if check_inputs:
        _check_inputs(spec, path)
    print(f"{path}: ok ({len(spec.variant)} variant(s), provider {spec.provider.kind})")
    return EXIT_OK


def _check_inputs(spec: Spec, source: str) -> None:
    if spec.dataset.format == "synthetic":
        return
    folder = Path(spec.dataset.path or "")
    if not folder.is_dir():
        raise SpecError(
            source, (_problem("dataset.path", f"expected an existing folder ({folder} does not exist)"),)
        )
    if spec.dataset.format == "netflix":
        missing = [n for n in ("movie_titles.csv",) if not (folder / n).is_file()]
        if not list(folder.glob("combined_data_*.txt")):
            missing.append("combined_data_*.txt")
    else:
        layouts = (("u.data", "u.item"), ("ratings.dat", "movies.dat"), ("ratings.csv", "movies.csv"))
        found = any(all((folder / n).is_file() for n in layout) for layout in layouts)
        missing = (
            [] if found else ["u.data and u.item, ratings.dat and movies.dat, or ratings.csv and movies.csv"]
        )
    if missing:
        raise SpecError(source, (_problem("dataset.path", f"expected {', '.join(missing)} in {folder}"),))


def _load_dataset(spec: Spec, cache_dir: Path | None = None) -> Dataset:
    if spec.dataset.format == "synthetic":
        from llmrec.data.synthetic import generate_synthetic

        return generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    if spec.dataset.format == "movielens":
        from llmrec.data.movielens import read_movielens

        return read_movielens(spec.dataset.path or "")
    from llmrec.data.netflix import read_netflix

    return read_netflix(spec.dataset.path or "", cache_dir=cache_dir)


def _synth(ratings: int, out: str, seed: int) -> int:
    from llmrec.data.synthetic import write_synthetic_netflix

    started = time.monotonic()
    summary = write_synthetic_netflix(ratings, out, seed=seed)
    seconds = time.monotonic() - started
    print(f"wrote {summary} to {out} in {seconds:.1f} s")
    return EXIT_OK


def _backend(spec: Spec, dataset: Callable[[], Dataset], run_dir: Path, progress: _Progress) -> Backend:
    if spec.provider.kind == "fake":
        settings = spec.provider.fake
        fake = FakeProvider(
            lambda: [dataset().movies.display(int(m)) for m in dataset().movies.ids],
            min_z=settings.min_z,
            min_count=settings.min_count,
            state_dir=run_dir / "fake-service",
        )
        return as_backend(fake)
    if spec.provider.kind == "local":
        from llmrec.providers.local import make_local_backend

        return make_local_backend(spec.finetune, spec.provider.local, run_dir / "local", progress)
    from llmrec.providers.budget import BudgetGuard
    from llmrec.providers.openai import make_openai_backend

    # the key comes from the environment only, and goes nowhere but the client
    key = os.environ.get("OPENAI_API_KEY", "")
    if not key:
        where = "OPENAI_API_KEY"
        problem = SpecProblem("", 'expected the API key in OPENAI_API_KEY for provider.kind = "openai"')
        raise SpecError(where, (problem,))
    openai = spec.provider.openai
    budget = BudgetGuard(openai.budget_usd) if openai.budget_usd is not None else None
    return make_openai_backend(
        openai,
        api_key=key,
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        progress=progress,
        budget=budget,
    )


def _fingerprint(spec: Spec) -> str:
    """
    The dataset files' names, sizes and modification times (what the load key depends on).
    """
    if spec.dataset.format == "synthetic":
        return "synthetic"
    folder = Path(spec.dataset.path or "")
    parts = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.is_file():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _data_bytes(spec: Spec) -> int:
    if spec.dataset.format == "synthetic" or not spec.dataset.path:
        return 0
    folder = Path(spec.dataset.path)
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


class _Progress:
    """
    Progress lines on stderr with rate and ETA, at most two a second per stage.
    """

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet
        self._last: dict[str, float] = {}
        self._first: dict[str, tuple[float, int]] = {}

    def __call__(
        self, stage: str, done: int, total: int | None, *, rate: float | None = None, note: str = ""
    ) -> None:
        if self._quiet:
            return
        now = time.monotonic()
        start = self._first.setdefault(stage, (now, done))
        finished = total is not None and done >= total
        if not finished and now - self._last.get(stage, 0.0) < 0.5:
            return
        self._last[stage] = now
        elapsed = now - start[0]
        line = f"  {stage}: {done}/{total}" if total is not None else f"  {stage}: {done}"
        speed = (done - start[1]) / elapsed if elapsed > 0 else 0.0
        if speed > 0 and not finished:
            line += f" ({speed:.1f}/s"
            if total is not None:
                line += f", ETA {max(0.0, (total - done) / speed):.0f} s"
            line += ")"
        if rate is not None:
            line += f" {rate:.1f} {note}".rstrip()
        elif note:
            line += f" {note}"
        print(line, file=sys.stderr)


def _check_paths(spec_path: str, out: Path, runs: Path) -> None:
    problems = []
    if Path(spec_path).is_dir():
        problems.append(SpecProblem("", f"expected a spec file, but {spec_path} is a folder"))
    for flag, path in (("--out", out), ("--runs", runs)):
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            problems.append(SpecProblem("", f"{flag} {path}: expected a folder, but {probe} is a file"))
        elif probe.exists() and not os.access(probe, os.W_OK):
            problems.append(SpecProblem("", f"{flag} {path}: {probe} is not writable"))
    if problems:
        raise SpecError(spec_path, tuple(problems))


def _run(args: argparse.Namespace) -> int:
    # gather: spec, paths, run store, provider (the dataset loads only if a stage needs it)
    started = dt.datetime.now(dt.UTC)
    if Path(args.spec).is_dir():
        _check_paths(args.spec, Path("."), Path("."))
    spec, spec_text = _load_spec(args.spec)
    name = spec.experiment.name
    out = Path(args.out) if args.out else Path("reports") / name
    runs = Path(args.runs)
    _check_paths(args.spec, out, runs)
    _check_inputs(spec, args.spec)
    run_dir = runs / name
    if args.fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir / "stages", ignore_errors=True)
        shutil.rmtree(run_dir / "fake-service", ignore_errors=True)
    progress = _Progress(args.quiet)
    store = DiskRunStore(run_dir, durable=spec.provider.kind != "fake")
    try:
        cache: dict[str, Dataset] = {}

        def dataset() -> Dataset:
            if "d" not in cache:
                progress("load data", 0, 1)
                cache["d"] = _load_dataset(spec, cache_dir=runs / "cache")
                progress("load data", 1, 1)
            return cache["d"]

        backend = _backend(spec, dataset, run_dir, progress)
        poll = spec.provider.openai.poll_interval_s if spec.provider.kind == "openai" else 0.0

        # compute
        outcome = run_stages(
            spec,
            dataset,
            backend,
            store=store,
            data_fingerprint=_fingerprint(spec),
            version=_version(),
            progress=progress,
            wait=lambda: time.sleep(poll),
            # big datasets: spread the neighbour ground truth over the cores (forked workers)
            workers=min(2, os.cpu_count() or 1) if _data_bytes(spec) >= 100_000_000 else 1,
            source=args.spec,
            paid=spec.provider.kind == "openai",
            allow_small=args.allow_small,
        )
        finished = dt.datetime.now(dt.UTC)

        # write: the report folder
        manifest = _manifest(spec, spec_text, args.spec, outcome, started, finished, backend)
        out.mkdir(parents=True, exist_ok=True)
        report_started = time.monotonic()
        files = {
            "results.json": _json(outcome.results.to_dict()),
            "predictions.jsonl": encode_predictions(outcome.predictions).decode("utf-8", "surrogatepass"),
            **report_files(outcome.results, manifest=manifest, predictions=outcome.predictions),
        }
        manifest["stages"].append(
            {
                "stage": "report",
                "kind": "report",
                "computed": True,
                "seconds": round(time.monotonic() - report_started, 6),
            }
        )
        files["manifest.json"] = _json(manifest)
        for filename, content in files.items():
            atomic_write(out / filename, content.encode("utf-8", "surrogatepass"))
    finally:
        store.close()
    _summary(outcome, out)
    return EXIT_OK


def _status(run_dir: str) -> int:
    root = Path(run_dir)
    if not (root / "stages").is_dir():
        raise SpecError(run_dir, (SpecProblem("", "expected a run directory (with a stages/ folder)"),))
    for line in describe_run(root):
        print(line)
    return EXIT_OK


def _report(sources: Sequence[str], out: str) -> int:
    from llmrec.report.rebuild import rebuild_reports

    for page in rebuild_reports([Path(s) for s in sources], Path(out)):
        print(f"report: {page}")
    return EXIT_OK


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=True) + "\n"


def _manifest(
    spec: Spec,
    spec_text: str,
    spec_path: str,
    outcome: ExperimentOutcome,
    started: dt.datetime,
    finished: dt.datetime,
    backend: Backend,
) -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "schema_version": 2,
        "experiment": spec.experiment.name,
        "spec_path": spec_path,
        "spec_hash": spec_hash(spec_text),
        "spec_text": spec_text,
        # the system message and the user template before any profile is filled in (the report's protocol)
        "prompt_template_hash": hashlib.sha256(
            (system_text(spec.prompt) + "\n\n" + spec.prompt.user_template).encode("utf-8")
        ).hexdigest()[:16],
        "seeds": {"experiment": spec.experiment.seed, "inference": spec.inference_seed},
        "dataset": {"format": spec.dataset.format, "path": spec.dataset.path},
        "provider": spec.provider.kind,
        "backend": backend.identity,
        "models": [{"variant": v, "role": r, "model": m} for v, r, m in outcome.models],
        "finetune_jobs": [
            {
                "variant": v,
                "job": s.job_id,
                "status": s.status,
                "model": s.model,
                "trained_tokens": s.trained_tokens,
            }
            for v, s in outcome.jobs
        ],
        "usage": dict(outcome.usage),
        "answers_reused_from_run_state": outcome.reused_answers,
        "requests_sent_again_after_a_stop": outcome.repeated_requests,
        "stages": [
            {
                "stage": r.stage,
                "kind": r.kind,
                "key": r.key,
                "computed": r.computed,
                "seconds": round(r.seconds, 6),
            }
            for r in outcome.stages
        ],
        "versions": {
            "llmrec": _version(),
            "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ("numpy", "attrs", "cattrs", "jinja2", "plotly", "openai")},
        },
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
    }


def _summary(outcome: ExperimentOutcome, out: Path) -> None:
    results = outcome.results
    for variant in results.variants:
        c = dict(variant.counts)
        print(
            f"{variant.name}: {c['eligible_users']:,} eligible users, {c['sampled_users']:,} sampled, "
            f"{c['with_ground_truth']:,} with ground truth "
            f"(train {c['train_users']:,} / validation {c['validation_users']:,} / test {c['test_users']:,})"
        )
        if variant.funnel is not None:
            drawn = dict(variant.funnel.neighbors_drawn)
            print(
                f"  neighbours drawn per user: median {drawn['median']:,.0f}, mean {drawn['mean']:,.1f}; "
                f"mean ground-truth size {variant.funnel.mean_ground_truth_size:.2f}"
            )
        labels = [m.label for m in variant.models]
        print(f"  {'metric':<14}" + "".join(f"{label:>12}" for label in labels))
        for name in results.metric_names:
            row = "".join(f"{m.metric(name):>12.4f}" for m in variant.models)
            print(f"  {name:<14}{row}")
    print(f"report: {out / 'index.html'}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
