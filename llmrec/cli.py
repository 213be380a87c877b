"""
The shell: arguments, environment, files, clock, the real provider, exit codes.

Exit codes: 0 success; 2 bad input (spec, data, arguments); 1 provider or runtime failure;
130 interrupted. Errors print one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import attrs

from llmrec.data import Dataset
from llmrec.errors import DataError, LlmrecError, ProviderError, SpecError, SpecProblem
from llmrec.evaluate import ExperimentOutcome, run_experiment
from llmrec.providers.base import ChatResult, FineTuneJob, Provider, Usage
from llmrec.providers.fake import FakeProvider
from llmrec.report import render_report, report_assets
from llmrec.spec import Spec, parse_spec, spec_hash

__all__ = ["main"]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


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
    try:
        if args.command == "validate":
            return _validate(args.spec, check_inputs=args.check_inputs)
        if args.command == "data":
            return _synth(args.ratings, args.out, args.seed)
        return _run(args)
    except (SpecError, DataError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except ProviderError as exc:
        _error(f"provider failed: {exc}")
        return EXIT_RUNTIME
    except LlmrecError as exc:
        _error(str(exc))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        _error("interrupted; answers received so far are kept in the run folder")
        return EXIT_INTERRUPTED
    except OSError as exc:
        _error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        return EXIT_RUNTIME


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


def _make_provider(spec: Spec, dataset: Dataset) -> Provider:
    if spec.provider.kind == "fake":
        return FakeProvider.for_movies(dataset.movies)
    msg = (
        f'provider.kind = "{spec.provider.kind}" is not available in llmrec {_version()} yet; '
        'use kind = "fake" (the OpenAI provider is planned)'
    )
    raise ProviderError(msg)


class _JsonlStore:
    """
    Chat results in ``runs/<name>/completions.jsonl``, one line each, written as they arrive.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._results: dict[str, ChatResult] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: its request is simply asked again
                usage = Usage(row["usage"]["prompt_tokens"], row["usage"]["completion_tokens"])
                self._results[row["fingerprint"]] = ChatResult(row["key"], row["model"], row["text"], usage)
        self._file: TextIO = path.open("a", encoding="utf-8")

    @property
    def reused(self) -> int:
        return len(self._results)

    def get(self, fingerprint: str) -> ChatResult | None:
        return self._results.get(fingerprint)

    def put(self, fingerprint: str, result: ChatResult) -> None:
        row = {"fingerprint": fingerprint, **attrs.asdict(result)}
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self._results[fingerprint] = result

    def close(self) -> None:
        self._file.close()


class _Progress:
    """
    Progress lines on stderr, at most a few a second per stage.
    """

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._quiet:
            return
        now = time.monotonic()
        if done < total and now - self._last.get(stage, 0.0) < 0.5:
            return
        self._last[stage] = now
        print(f"  {stage}: {done}/{total}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    # gather: spec, data, provider, run state
    started = dt.datetime.now(dt.UTC)
    spec, spec_text = _load_spec(args.spec)
    _check_inputs(spec, args.spec)
    name = spec.experiment.name
    out = Path(args.out) if args.out else Path("reports") / name
    run_dir = Path(args.runs) / name
    progress = _Progress(args.quiet)
    progress("load data", 0, 1)
    dataset = _load_dataset(spec, cache_dir=Path(args.runs) / "cache")
    progress("load data", 1, 1)
    provider = _make_provider(spec, dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for stale in ("completions.jsonl", "jobs.json"):
            (run_dir / stale).unlink(missing_ok=True)
    jobs_path = run_dir / "jobs.json"
    known_jobs = _read_jobs(jobs_path) if spec.provider.kind != "fake" else {}
    store = _JsonlStore(run_dir / "completions.jsonl")
    reused = store.reused

    def on_job(variant: str, job: FineTuneJob) -> None:
        known_jobs[variant] = job.id
        jobs_path.write_text(json.dumps(known_jobs, indent=2) + "\n", encoding="utf-8")

    # compute
    try:
        outcome = run_experiment(
            spec,
            dataset,
            provider,
            wait=lambda: time.sleep(5.0 if spec.provider.kind != "fake" else 0.0),
            store=store,
            progress=progress,
            on_job=on_job,
            resume_jobs={v: FineTuneJob(id=j) for v, j in known_jobs.items()},
            # big datasets: spread the neighbour ground truth over the cores (forked workers)
            workers=min(2, os.cpu_count() or 1) if len(dataset.ratings) >= 5_000_000 else 1,
        )
    finally:
        store.close()
    finished = dt.datetime.now(dt.UTC)

    # write: the report folder
    manifest = _manifest(spec, spec_text, args.spec, dataset, outcome, started, finished, reused)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(_json(outcome.results.to_dict()), encoding="utf-8")
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for record in outcome.predictions:
            fh.write(json.dumps({"schema_version": 1, **record}, ensure_ascii=False) + "\n")
    (out / "manifest.json").write_text(_json(manifest), encoding="utf-8")
    for asset, content in report_assets().items():
        (out / asset).write_text(content, encoding="utf-8")
    (out / "index.html").write_text(render_report(outcome.results, manifest=manifest), encoding="utf-8")
    _summary(outcome, out)
    return EXIT_OK


def _read_jobs(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=True) + "\n"


def _manifest(
    spec: Spec,
    spec_text: str,
    spec_path: str,
    dataset: Dataset,
    outcome: ExperimentOutcome,
    started: dt.datetime,
    finished: dt.datetime,
    reused: int,
) -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "schema_version": 1,
        "experiment": spec.experiment.name,
        "spec_path": spec_path,
        "spec_hash": spec_hash(spec_text),
        "spec_text": spec_text,
        "seeds": {"experiment": spec.experiment.seed, "inference": spec.inference_seed},
        "dataset": {"format": spec.dataset.format, "source": dataset.source, "ratings": len(dataset.ratings)},
        "provider": spec.provider.kind,
        "models": [{"variant": v, "role": r, "model": m} for v, r, m in outcome.models],
        "finetune_jobs": [
            {"variant": v, "job": s.job_id, "status": s.status, "model": s.model, "events": list(s.events)}
            for v, s in outcome.jobs
        ],
        "usage": dict(outcome.usage),
        "answers_reused_from_run_state": reused,
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
