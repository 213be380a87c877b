"""
The shell: arguments, environment, files, clock, the real provider, exit codes.

Exit codes: 0 success; 2 bad input (spec, data, arguments); 1 provider or runtime failure;
130 interrupted. Errors print one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import attrs

from llmrec.background import BackgroundJobs
from llmrec.console import make_progress
from llmrec.data import Dataset
from llmrec.errors import DataError, LlmrecError, MissingExtraError, ProviderError, SpecError, SpecProblem
from llmrec.estimate import CostEstimate, actual_cost, render_estimate
from llmrec.executor import Executor, SerialExecutor, executor_for
from llmrec.keys import llmrec_version
from llmrec.pipeline import ExperimentOutcome, estimate_run, expected_stages, run_stages
from llmrec.prompts import system_text
from llmrec.providers.base import Backend, Progress, Usage, as_backend
from llmrec.providers.budget import BudgetGuard
from llmrec.providers.fake import FakeProvider
from llmrec.providers.pricing import default_prices
from llmrec.ray_executor import RayExecutor, RayMissingError
from llmrec.report import report_files
from llmrec.spec import ExecutorKind, Spec, parse_spec, spec_hash
from llmrec.stages.evaluate import encode_predictions
from llmrec.status import describe_run
from llmrec.store import (
    DiskRunStore,
    RunLockedError,
    StageRecord,
    StoreError,
    atomic_write,
    read_records,
    remove_stale_temporaries,
    stage_folders,
)
from llmrec.tokens import counts_remembered

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="Run, reproduce and extend 'LLM as recommender' experiments from a TOML spec.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {llmrec_version()}")
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
        "--workers",
        type=_positive_int,
        help="processes for the parallel stages, or CPUs of a local Ray instance (default: "
        "execution.workers, else both cores for datasets over 100 MB)",
    )
    _executor_argument(run)
    run.add_argument(
        "--allow-small",
        action="store_true",
        help="run a paid provider even when a variant has fewer than evaluation.min_test_users test users",
    )

    estimate = sub.add_parser(
        "estimate", help="run the cheap stages and print the funnel, tokens and dollars a run would cost"
    )
    estimate.add_argument("spec", help="the experiment spec (TOML)")
    estimate.add_argument("--runs", default="runs", help="folder for run state (default: runs)")
    estimate.add_argument("--quiet", action="store_true", help="no progress lines")
    _executor_argument(estimate)

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


def _executor_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        choices=("serial", "process", "ray"),
        help="where the parallel stages run (default: execution.executor, process); ray needs llmrec[ray] "
        "and joins RAY_ADDRESS when set",
    )


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
        if args.command == "estimate":
            return _estimate(args)
        return _run(args)
    except (SpecError, DataError, RayMissingError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except MissingExtraError as exc:  # before any work: nothing to keep
        _error(str(exc))
        return EXIT_RUNTIME
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
    except BrokenPipeError:  # the reader went away (llmrec status ... | head)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the interpreter's final flush
        return EXIT_OK
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
    for warning in _retirement_warnings(spec, dt.datetime.now(dt.UTC).date()):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: ok ({len(spec.variant)} variant(s), provider {spec.provider.kind})")
    return EXIT_OK


# a run that fine-tunes and then asks every test user can take days (a batch has a 24 h window)
_RUN_DAYS = 7
_LAST_NEW_FINETUNE = dt.date(2027, 1, 6)  # reported by secondary sources, written down 2026-12-01


def _retirement_warnings(spec: Spec, today: dt.date) -> list[str]:
    """
    Warnings for OpenAI models that shut down before a run started today would end: from the
    models endpoint's ``shutdown_date`` when a key is set and the server gives one, else from the
    dates reported by secondary sources (docs/openai.md).
    """
    if spec.provider.kind != "openai":
        return []
    from llmrec.providers.openai import ModelInfo, OpenAIChat, probe_server, retirement_warning

    models = [
        spec.finetune.base_model,
        *(m for m in [spec.finetune.model, *(v.model for v in spec.variant)] if m),
    ]
    infos: dict[str, ModelInfo] = {}
    out: list[str] = []
    key = os.environ.get("OPENAI_API_KEY", "")
    if key:
        try:
            settings = spec.provider.openai
            chat = OpenAIChat(
                attrs.evolve(settings, max_retries=1),
                api_key=key,
                # the server the run would use: the spec's base_url wins over OPENAI_BASE_URL
                base_url=settings.base_url or os.environ.get("OPENAI_BASE_URL") or None,
            )
            found = probe_server(chat, spec.finetune.base_model, ())
            infos = {m.id: m for m in found.models}
        except ProviderError as exc:
            out.append(f"could not read the models endpoint ({exc}); using the dates in docs/openai.md")
    for model in dict.fromkeys(models):
        info = infos.get(model, ModelInfo(id=model))
        warning = retirement_warning(info, today, _RUN_DAYS)
        soon = retirement_warning(info, today, 90)
        if warning:
            out.append(warning)
        elif soon:  # not within this run, but soon: the answers archived in the run store outlast it
            # "model M shuts down on D (according to SOURCE)", without the part about this run's end
            out.append(
                f"{soon.split(', before this run')[0]}: every answer is archived in the run store, "
                "the only record that will outlast it"
            )
    needs_training = spec.finetune.model is None and not all(v.model for v in spec.variant)
    if needs_training and today + dt.timedelta(days=_RUN_DAYS) >= _LAST_NEW_FINETUNE:
        out.append(
            f"OpenAI stops new fine-tuning jobs on {_LAST_NEW_FINETUNE.isoformat()} (secondary sources, "
            "written down 2026-12-01); set finetune.model to reuse a fine-tuned model, or use "
            'provider.kind = "local" (docs/local.md)'
        )
    return out


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


def _load_dataset(
    spec: Spec,
    cache_dir: Path | None = None,
    defer_store: Callable[[Callable[[], Dataset]], None] | None = None,
) -> Dataset:
    if spec.dataset.format == "synthetic":
        from llmrec.data.synthetic import generate_synthetic

        return generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    if spec.dataset.format == "movielens":
        from llmrec.data.movielens import read_movielens

        return read_movielens(spec.dataset.path or "")
    from llmrec.data.netflix import read_netflix

    return read_netflix(spec.dataset.path or "", cache_dir=cache_dir, defer_store=defer_store)


def _synth(ratings: int, out: str, seed: int) -> int:
    from llmrec.data.synthetic import write_synthetic_netflix

    started = time.monotonic()
    summary = write_synthetic_netflix(ratings, out, seed=seed)
    seconds = time.monotonic() - started
    print(f"wrote {summary} to {out} in {seconds:.1f} s")
    return EXIT_OK


def _backend(
    spec: Spec,
    dataset: Callable[[], Dataset],
    run_dir: Path,
    progress: Progress,
    budget: BudgetGuard | None = None,
) -> Backend:
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
    from llmrec.providers.openai import make_openai_backend

    # the key comes from the environment only, and goes nowhere but the client
    key = os.environ.get("OPENAI_API_KEY", "")
    if not key:
        where = "OPENAI_API_KEY"
        problem = SpecProblem("", 'expected the API key in OPENAI_API_KEY for provider.kind = "openai"')
        raise SpecError(where, (problem,))
    return make_openai_backend(
        spec.provider.openai,
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
    progress = make_progress(quiet=args.quiet, stream=sys.stderr)
    executor = _executor(spec, args.executor, args.workers)
    store = DiskRunStore(run_dir, durable=spec.provider.kind != "fake")
    with _closing(store, executor) as background:
        if args.fresh:  # only once the lock is held: never under another run's feet
            import shutil

            shutil.rmtree(run_dir / "stages", ignore_errors=True)
            shutil.rmtree(run_dir / "fake-service", ignore_errors=True)
        dataset = _dataset_loader(spec, runs, progress, background)
        expected = (json.dumps(expected_stages(spec), indent=1) + "\n").encode("utf-8")
        atomic_write(run_dir / "expected.json", expected)
        if spec.provider.kind == "openai" and spec.provider.openai.budget_usd is not None:
            _check_budget(spec, dataset, store, progress, args.spec, executor)
        budget = _budget_guard(spec, run_dir)
        backend = _backend(spec, dataset, run_dir, progress, budget)
        if spec.provider.kind == "openai":
            backend = _probe(spec, backend, run_dir, args.spec)
        # one wait between polls of jobs and batches (the stages wait more times as a loop goes on):
        # OpenAI's interval; local training runs in a thread of this process, so a short sleep keeps
        # the poll loop from competing with it; the fake needs none
        poll = {"openai": spec.provider.openai.poll_interval_s, "local": 1.0}.get(spec.provider.kind, 0.0)

        # compute
        outcome = run_stages(
            spec,
            dataset,
            backend,
            store=store,
            data_fingerprint=_fingerprint(spec),
            version=llmrec_version(),
            progress=progress,
            wait=lambda: time.sleep(poll),
            executor=executor,
            source=args.spec,
            paid=spec.provider.kind == "openai",
            allow_small=args.allow_small,
            price=_price_of(spec),
            budget=budget,
            spec_hash=spec_hash(spec_text),
        )
        finished = dt.datetime.now(dt.UTC)
        writing = time.monotonic()

        # write: the report folder (with estimated and actual cost; the estimate reuses stored stages).
        # The manifest holds what the results depend on and each stage's recorded timing, so a rerun
        # over the stored run rewrites the same bytes; this invocation's own timings go to the run
        # folder (last-run.json).
        records = {(r.stage, r.key): r for r in store.records()}
        manifest = _manifest(spec, spec_text, args.spec, outcome, records, backend)
        manifest["cost"] = _cost(spec, dataset, store, progress, args.spec, outcome, executor)
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # left by a run killed while it wrote this folder
        files: dict[str, str | bytes] = {
            "results.json": _json(outcome.results.to_dict()),
            "predictions.jsonl": encode_predictions(outcome.predictions),  # the bytes the stage stored
            **report_files(outcome.results, manifest=manifest, predictions=outcome.predictions),
            "manifest.json": _json(manifest),
        }
        for filename, content in files.items():
            data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
            atomic_write(out / filename, data)
        last_run = {
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "answers_reused_from_run_state": outcome.reused_answers,
            "requests_sent_again_after_a_stop": outcome.repeated_requests,
            "executor": executor.name,
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
            "report": str(out),
            # the manifest, the cost estimate and the report folder, after the stages
            "report_seconds": round(time.monotonic() - writing, 6),
            "total_seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 6),
        }
        atomic_write(run_dir / "last-run.json", _json(last_run).encode("utf-8"))
    _summary(outcome, out)
    return EXIT_OK


def _estimate(args: argparse.Namespace) -> int:
    # gather
    spec, _ = _load_spec(args.spec)
    runs = Path(args.runs)
    _check_paths(args.spec, runs, runs)
    _check_inputs(spec, args.spec)
    progress = make_progress(quiet=args.quiet, stream=sys.stderr)
    executor = _executor(spec, args.executor, None)
    store = DiskRunStore(runs / spec.experiment.name, durable=spec.provider.kind != "fake")
    with _closing(store, executor) as background:
        # compute: the cheap stages, stored so that the run reuses them
        estimate, funnel = _estimate_with(
            spec, _dataset_loader(spec, runs, progress, background), store, progress, args.spec, executor
        )
    # write
    for line in funnel:
        print(line)
    print(render_estimate(estimate))
    return EXIT_OK


def _check_budget(
    spec: Spec,
    dataset: Callable[[], Dataset],
    store: DiskRunStore,
    progress: Progress,
    source: str,
    executor: Executor,
) -> None:
    """
    Refuse to start a run whose estimated cost exceeds ``budget_usd`` (the cheap stages it runs are
    stored, so the run itself reuses them).
    """
    budget = spec.provider.openai.budget_usd
    assert budget is not None
    estimate, _ = _estimate_with(spec, dataset, store, progress, source, executor)
    expected = estimate.total.expected
    if expected > budget:
        problem = SpecProblem(
            "provider.openai.budget_usd",
            f"a budget above the run's estimated ${expected:,.2f} (worst case ${estimate.total.worst:,.2f}; "
            f"see llmrec estimate {source})",
            budget,
            True,
        )
        raise SpecError(source, (problem,))


def _cost(
    spec: Spec,
    dataset: Callable[[], Dataset],
    store: DiskRunStore,
    progress: Progress,
    source: str,
    outcome: ExperimentOutcome,
    executor: Executor,
) -> dict[str, Any]:
    prices = default_prices()
    kind = spec.provider.kind
    try:
        estimate, _ = _estimate_with(spec, dataset, store, progress, source, executor)
        trained = [(spec.finetune.base_model, s.trained_tokens or 0) for _, s in outcome.jobs]
        actual = actual_cost(outcome.usage_by_model, trained, prices, kind=kind)
    except DataError as exc:  # a compatible server's own models have no price
        return {"unknown": str(exc)}
    tokens = estimate.total_tokens
    return {
        "currency": estimate.currency,
        "prices_as_of": estimate.prices_as_of,
        "estimated_usd": {
            "low": estimate.total.low,
            "expected": estimate.total.expected,
            "worst": estimate.total.worst,
        },
        "estimated_tokens": {"expected": tokens.expected, "worst": tokens.worst},
        "actual_usd": actual,
        "actual_tokens": {
            "inference": sum(u.total_tokens for _, u in outcome.usage_by_model),
            "training": sum(t for _, t in trained),
        },
        "free": kind in ("fake", "local"),
    }


def _probe(spec: Spec, backend: Backend, run_dir: Path, source: str) -> Backend:
    """
    Before any paid or long stage, ask the server what it supports (stored in the run directory and
    reused), refuse a spec that needs a feature it lacks, and drop fine-tuning when the server has
    none and the spec names its fine-tuned models.
    """
    from llmrec.providers.openai import OpenAIChat, probe_server

    chat = backend.chat
    assert isinstance(chat, OpenAIChat)
    reasoning = spec.provider.openai.request_profile == "reasoning"
    needs = sorted(
        {*(() if reasoning else ("seed",)), *(("json_schema",) if spec.prompt.output_mode == "json" else ())}
    )
    needs_training = spec.finetune.model is None and not all(v.model for v in spec.variant)
    path = run_dir / "probe.json"
    stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if not (
        isinstance(stored, dict) and stored.get("identity") == chat.identity and stored.get("needs") == needs
    ):
        found = probe_server(chat, spec.finetune.base_model, needs)
        can_tune = True
        if backend.finetune is not None:
            try:
                backend.finetune.find_finetune("llmrec-probe")
            except ProviderError as exc:
                if exc.status not in (404, 405, 501):
                    raise
                can_tune = False
        stored = {
            "identity": chat.identity,
            "needs": needs,
            "models": [m.id for m in found.models],
            "supported": sorted(found.supported),
            "unsupported": [list(u) for u in found.unsupported],
            "finetuning": can_tune and backend.finetune is not None,
        }
        atomic_write(path, (json.dumps(stored, indent=1) + "\n").encode("utf-8"))
    fields = {"seed": "inference.seed", "json_schema": 'prompt.output_mode = "json"', "logprobs": "logprobs"}
    problems = [
        SpecProblem(
            "",
            f"{fields.get(feature, feature)} needs {feature}, which {chat.identity} does not support ({why})",
        )
        for feature, why in stored["unsupported"]
    ]
    if needs_training and not stored["finetuning"]:
        problems.append(
            SpecProblem(
                "finetune.model",
                f"a fine-tuned or served adapter model id: {chat.identity} offers no fine-tuning "
                "(set finetune.model, or model in each [[variant]])",
            )
        )
    if problems:
        raise SpecError(source, tuple(problems))
    if not stored["finetuning"]:
        return Backend(chat=backend.chat, finetune=None, batch=backend.batch)
    return backend


def _budget_guard(spec: Spec, run_dir: Path) -> BudgetGuard | None:
    """
    The run's spending guard (``budget_usd``), started at what earlier processes already spent in
    this run directory, so that one budget holds across kills and resumes.
    """
    price = _price_of(spec)
    limit = spec.provider.openai.budget_usd
    if spec.provider.kind != "openai" or limit is None or price is None:
        return None
    return BudgetGuard(limit, spent_usd=_spent_so_far(run_dir, price))


def _spent_so_far(run_dir: Path, price: Callable[[str, Usage], float]) -> float:
    """
    Dollars spent in a run directory so far: the recorded spend of every finished stage, plus the
    answers stored by inference stages that did not finish (those of a killed run).
    """
    total = sum(r.spend_usd for r in read_records(run_dir))
    for folder in stage_folders(run_dir):
        log = folder / "answers.jsonl"
        if (folder / "record.json").exists() or not log.exists():
            continue
        for line in log.read_bytes().split(b"\n"):
            try:
                r = json.loads(line)
                if not isinstance(r, dict) or r.get("t") != "answer" or r.get("copied"):
                    continue
                result = r["result"]
                u = result["usage"]
                mode: Literal["sync", "batch"] = "batch" if u.get("mode") == "batch" else "sync"
                usage = Usage(
                    int(u["prompt_tokens"]),
                    int(u["completion_tokens"]),
                    cached_tokens=int(u.get("cached_tokens", 0)),
                    mode=mode,
                )
                total += price(str(result["model"]), usage)
            except (ValueError, TypeError, KeyError):
                continue
    return total


def _price_of(spec: Spec) -> Callable[[str, Usage], float] | None:
    """
    Dollars for a model's usage from the price table (``training:<base>`` prices trained tokens);
    None for the free kinds; 0 for a model the table does not know (a compatible server's).
    """
    if spec.provider.kind != "openai":
        return None
    prices = default_prices()

    def price(model: str, usage: Usage) -> float:
        try:
            if model.startswith("training:"):
                return prices.training_cost(usage.prompt_tokens, 1, model.removeprefix("training:"))
            return prices.cost(usage, model)
        except DataError:
            return 0.0

    return price


def _estimate_with(
    spec: Spec,
    dataset: Callable[[], Dataset],
    store: DiskRunStore,
    progress: Progress,
    source: str,
    executor: Executor,
) -> tuple[CostEstimate, tuple[str, ...]]:
    """
    The estimate of a run over its store (the cheap stages it needs are stored, or reused); each
    distinct text is tokenised once.
    """
    with counts_remembered():
        return estimate_run(
            spec,
            dataset,
            store=store,
            data_fingerprint=_fingerprint(spec),
            version=llmrec_version(),
            prices=default_prices(),
            progress=progress,
            executor=executor,
            source=source,
        )


def _executor(spec: Spec, kind: ExecutorKind | None, workers: int | None) -> Executor:
    """
    The executor for the parallel stages: the command line's choice over the spec's [execution].
    A Ray cluster is joined at RAY_ADDRESS when set, else at execution.ray_address, else a local
    instance starts (only when a stage needs it).
    """
    execution = spec.execution
    kind = kind or execution.executor
    given = workers or execution.workers
    if kind == "serial":
        return SerialExecutor()
    if kind == "ray":
        address = os.environ.get("RAY_ADDRESS") or execution.ray_address
        return RayExecutor(address=address, num_cpus=given)
    return executor_for(_workers(spec, given))


def _close(executor: Executor) -> None:
    if isinstance(executor, RayExecutor):
        executor.close()


def _workers(spec: Spec, given: int | None) -> int:
    # big datasets: spread the parallel stages over the cores (forked workers)
    return given or (min(2, os.cpu_count() or 1) if _data_bytes(spec) >= 100_000_000 else 1)


def _dataset_loader(
    spec: Spec, runs: Path, progress: Progress, background: BackgroundJobs
) -> Callable[[], Dataset]:
    cache: dict[str, Dataset] = {}

    def dataset() -> Dataset:
        if "d" not in cache:
            progress("load data", 0, 1)
            deferred: list[Callable[[], Dataset]] = []
            cache["d"] = _load_dataset(spec, cache_dir=runs / "cache", defer_store=deferred.append)
            for store in deferred:  # a parse to keep: written beside the next stages
                background.start(functools.partial(_store_and_swap, cache, store))
            progress("load data", 1, 1)
        return cache["d"]

    return dataset


def _store_and_swap(cache: dict[str, Dataset], store: Callable[[], Dataset]) -> None:
    """
    Write the parse cache, then give the stages its mapped columns: the same values, but pages that
    no stage reads again (the ground truth works on the index) leave memory with the parsed ones.
    """
    cache["d"] = store()


@contextlib.contextmanager
def _closing(store: DiskRunStore, executor: Executor) -> Iterator[BackgroundJobs]:
    """
    The command's resources around its stages: the jobs it runs beside them (the parse cache is
    written on a thread), then on the way out, in this order, the run store and the executor closed
    and the jobs waited for. An interrupt does not wait: a half-written cache entry is cleaned up by
    the next run.
    """
    background = BackgroundJobs()
    interrupted = False
    try:
        yield background
    except (KeyboardInterrupt, _Terminated):
        interrupted = True
        raise
    finally:
        store.close()
        _close(executor)
        if not interrupted:
            _finish_background(background)


def _finish_background(background: BackgroundJobs) -> None:
    """
    Wait for the background jobs (the parse cache's write); a failure is a warning, not the run's.
    """
    for exc in background.finish():
        print(f"warning: {exc}; the next run parses the dataset again", file=sys.stderr)


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
    records: Mapping[tuple[str, str], StageRecord],
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
        "training_curves": _training_curves(outcome),
        # each stage as the store recorded it when it was computed
        "stages": [
            {"stage": r.stage, "kind": r.kind, "key": r.key, "seconds": r.seconds, "finished": r.finished}
            for r in (records.get((s.stage, s.key)) for s in outcome.stages)
            if r is not None
        ],
        "versions": {
            "llmrec": llmrec_version(),
            "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ("numpy", "attrs", "cattrs", "jinja2", "plotly", "openai")},
        },
        "finished": next(
            (r.finished[:19] + "Z" for (stage, _), r in records.items() if stage == "evaluate"), None
        ),
    }


_CURVE_KEYS = ("step", "train_loss", "valid_loss", "valid_hit_rate")


def _training_curves(outcome: ExperimentOutcome) -> list[dict[str, Any]]:
    """
    Each fine-tune's per-step curve: the numbers of its metrics events, merged by step with the
    job's archived result file (OpenAI's per-step CSV, the fuller record, whose numbers win) where
    one was kept; one point per step, in step order. Metrics without a step come after the steps.
    """
    steps = dict(outcome.steps)
    curves = []
    for variant, events in outcome.events:
        by_step: dict[float, dict[str, float]] = {}
        loose: list[dict[str, float]] = []
        for e in events:
            metrics = dict(e.metrics)
            if "step" in metrics:
                by_step.setdefault(metrics["step"], {}).update(metrics)
            elif metrics:
                loose.append(metrics)
        for row in steps.get(variant, ()):
            metrics = dict(row)
            by_step.setdefault(metrics["step"], {}).update(metrics)
        points = [by_step[s] for s in sorted(by_step)] + loose
        curves.append(
            {"variant": variant, "points": [{k: v for k, v in p.items() if k in _CURVE_KEYS} for p in points]}
        )
    return curves


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
