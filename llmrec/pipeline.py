"""
The chain of stages over a run store: what ``run_experiment`` and ``llmrec run`` both execute.

For each seed: ``sample``, then per variant ``ground_truth`` and ``training_files``; then every
``finetune`` at once (all jobs submitted before any is polled, so they train side by side); then per
variant the ``infer`` stages of each LLM column and ``baselines``; then one ``evaluate`` over
everything. Each stage is looked up by its key first, so a rerun computes only what changed and a
killed run resumes where it stopped; the dataset is loaded only if some stage that needs it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from llmrec.data import Dataset
from llmrec.errors import DataError, ProviderError
from llmrec.estimate import (
    CostEstimate,
    InferenceItem,
    InferencePlan,
    TrainingPlan,
    estimate_cost,
    expected_output_tokens,
)
from llmrec.executor import Executor, executor_for
from llmrec.keys import section_hash, stage_key
from llmrec.metrics import metric_names
from llmrec.parsing import TitleMatcher
from llmrec.prompts import build_few_shot_messages, build_messages
from llmrec.providers.base import (
    Backend,
    ChatRequest,
    ChatResult,
    JobEvent,
    JobState,
    Progress,
    Usage,
    no_progress,
)
from llmrec.providers.budget import BudgetGuard
from llmrec.providers.pricing import BillingMode, PriceTable
from llmrec.results import ModelRole, Prediction, Results
from llmrec.sampling import RatingIndex, build_index
from llmrec.scoring import popularity_percentiles
from llmrec.spec import SamplingSpec, Spec
from llmrec.stages import baselines as baselines_stage
from llmrec.stages import evaluate as evaluate_stage
from llmrec.stages import finetune as finetune_stage
from llmrec.stages import ground_truth as truth_stage
from llmrec.stages import infer as infer_stage
from llmrec.stages import sample as sample_stage
from llmrec.stages import training_files as files_stage
from llmrec.stages.common import Lazy, StageRun, Stages, poll_backoff
from llmrec.store import RunStore
from llmrec.tokens import count_training

__all__ = ["ExperimentOutcome", "data_key", "estimate_run", "expected_stages", "run_stages"]

_LLM_ROLES: tuple[tuple[ModelRole, str], ...] = (("baseline", "Baseline"), ("finetuned", "Fine-tuned"))


@attrs.frozen(eq=False)
class ExperimentOutcome:
    """
    What a run produced: the scores, one prediction per (variant, seed, model, test user), the
    fine-tune job states, the model ids, the token usage, and which stages ran or were reused.
    """

    results: Results
    predictions: tuple[Prediction, ...]
    jobs: tuple[tuple[str, JobState], ...]
    models: tuple[tuple[str, str, str], ...]
    """(variant, role, model id) for every scored LLM column."""
    usage: Mapping[str, int]
    stages: tuple[StageRun, ...] = ()
    repeated_requests: int = 0
    """Requests in flight when an earlier run stopped, sent again by this one."""
    reused_answers: int = 0
    events: tuple[tuple[str, tuple[JobEvent, ...]], ...] = ()
    """Each fine-tune's job events (per variant), with the per-step losses the backend reported."""
    usage_by_model: tuple[tuple[str, Usage], ...] = ()
    """Tokens billed per model, for the actual cost."""
    steps: tuple[tuple[str, tuple[finetune_stage.Step, ...]], ...] = ()
    """Each fine-tune's per-step metrics from its archived result files (per variant; OpenAI's)."""

    @property
    def computed(self) -> tuple[str, ...]:
        """
        The stage instances computed by this run (the others came from the store).
        """
        return tuple(s.stage for s in self.stages if s.computed)


def data_key(spec: Spec, fingerprint: str, version: str) -> str:
    """
    The key of the loaded dataset: the dataset section (and the seed that generates synthetic data)
    and a fingerprint of the files (names, sizes, modification times) or of the given dataset.
    """
    reads: dict[str, Any] = {"dataset": spec.dataset}
    if spec.dataset.format == "synthetic":
        reads["seed"] = spec.experiment.seed
    return stage_key("load", reads, {"files": fingerprint}, version=version)


def _seeds(spec: Spec) -> list[int]:
    """
    ``experiment.seed`` first, then every other seed of ``experiment.seeds`` once.
    """
    first = spec.experiment.seed
    return [first, *(s for s in dict.fromkeys(spec.experiment.seeds) if s != first)]


def _roles(spec: Spec) -> tuple[tuple[ModelRole, str], ...]:
    """
    The LLM columns of a variant: zero-shot, fine-tuned, and few-shot when ``prompt.few_shot`` > 0.
    """
    return _LLM_ROLES + ((("few_shot", "Few-shot"),) if spec.prompt.few_shot > 0 else ())


def _suffix(experiment: str, variant: str) -> str:
    raw = f"{experiment}-{variant}".lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw)[:40]


@attrs.frozen(eq=False)
class _Plan:
    """
    One variant of one seed, after the cheap stages.
    """

    seed: int
    label: str
    """The variant's name, with ``@seed<N>`` for seeds other than ``experiment.seed``."""
    variant: str
    sampled: sample_stage.Sampled
    sample_key: str
    truth: truth_stage.Truth
    truth_key: str
    files: files_stage.TrainingFiles
    files_key: str
    model: str | None
    """The fine-tuned model: given in the spec, or set after the fine-tune stage."""


@attrs.frozen(eq=False)
class _Cheap:
    """
    What the cheap stages left: the plans, the data key, the lazy dataset and the stage runs so far.
    """

    stages: Stages
    plans: list[_Plan]
    key_data: str
    seeds: list[int]
    loaded: Callable[[], Dataset]


def _cheap_stages(
    spec: Spec,
    dataset: Callable[[], Dataset],
    *,
    store: RunStore,
    data_fingerprint: str,
    version: str,
    progress: Progress,
    executor: Executor,
    source: str,
) -> _Cheap:
    """
    Load (lazily), sample, ground truth and training files for every seed and variant.
    """
    stages = Stages(store=store)
    key_data = data_key(spec, data_fingerprint, version)
    # the dataset is asked for again at each use, never kept here: the CLI's loader swaps the parsed
    # columns for the parse cache's mapped ones once they are written, and the parsed ones can go
    asked = False
    index = Lazy(lambda: build_index(loaded().ratings))

    def loaded() -> Dataset:
        nonlocal asked
        first = not asked
        begun = time.monotonic()
        value = dataset()
        asked = True
        if first:
            folder = stages.dir("load", key_data)
            if folder.record is None:
                stages.finish(
                    folder,
                    "load",
                    "load",
                    time.monotonic() - begun,
                    value,
                    lambda d: {"ratings": len(d.ratings)},
                )
            else:  # read again (from the parse cache, or generated again): not a new result
                seconds = time.monotonic() - begun
                stages.runs.append(StageRun("load", "load", key_data, computed=False, seconds=seconds))
        return value

    def rating_index() -> RatingIndex:
        loaded()
        return index.get()

    def derive(
        sampled: sample_stage.Sampled, sampling: SamplingSpec, seed: int, name: str, i: int
    ) -> truth_stage.Truth:
        n_variants = len(spec.variant)
        return truth_stage.compute(
            rating_index(),
            sampled.sample,
            sampling,
            seed,
            name,
            executor,
            lambda done, n: progress("ground truth", i * n + done, n * n_variants),
        )

    seeds = _seeds(spec)
    plans: list[_Plan] = []
    for seed in seeds:
        tag = "" if seed == spec.experiment.seed else f"@seed{seed}"
        s_key = sample_stage.key(spec.sampling, spec.split, seed, key_data, version)
        sampled = stages.cached(
            f"sample{tag}",
            "sample",
            s_key,
            lambda seed=seed: sample_stage.compute(rating_index(), spec.sampling, spec.split, seed),  # type: ignore[misc]
            sample_stage.save,
            sample_stage.load,
            lambda v: {"sampled_users": len(v.sample.users), "eligible_users": v.sample.eligible},
        )
        for i, variant in enumerate(spec.variant):
            sampling = spec.variant_sampling(variant)
            label = variant.name + tag
            n_users = len(sampled.sample.users)
            everyone = n_users * len(spec.variant)
            progress("ground truth", i * n_users, everyone)
            t_key = truth_stage.key(sampling, seed, variant.name, s_key, key_data, version)
            truth = stages.cached(
                f"ground_truth/{label}",
                "ground_truth",
                t_key,
                lambda sampling=sampling, seed=seed, variant=variant, sampled=sampled, i=i: derive(  # type: ignore[misc]
                    sampled, sampling, seed, variant.name, i
                ),
                truth_stage.save,
                truth_stage.load,
                lambda v: {"with_ground_truth": int(v.kept.sum())},
            )
            f_key = files_stage.key(spec.prompt, variant.name, t_key, s_key, version)
            files = stages.cached(
                f"training_files/{label}",
                "training_files",
                f_key,
                lambda sampled=sampled, truth=truth, seed=seed, variant=variant: files_stage.compute(  # type: ignore[misc]
                    sampled, truth, spec.prompt, loaded().movies, seed=seed, variant=variant.name
                ),
                files_stage.save,
                files_stage.load,
                lambda v: {f"{s}_users": len(rows) for s, rows in v.members.items()},
            )
            model = variant.model or (spec.finetune.model if len(spec.variant) == 1 else None)
            files_stage.check_users(label, sampled, files, needs_training=model is None, source=source)
            plans.append(_Plan(seed, label, variant.name, sampled, s_key, truth, t_key, files, f_key, model))
        progress("ground truth", everyone, everyone)

    return _Cheap(stages=stages, plans=plans, key_data=key_data, seeds=seeds, loaded=loaded)


def run_stages(
    spec: Spec,
    dataset: Callable[[], Dataset],
    backend: Backend,
    *,
    store: RunStore,
    data_fingerprint: str,
    version: str,
    progress: Progress = no_progress,
    wait: Callable[[], None] = lambda: None,
    workers: int = 1,
    executor: Executor | None = None,
    source: str = "<spec>",
    paid: bool = False,
    allow_small: bool = True,
    price: Callable[[str, Usage], float] | None = None,
    budget: BudgetGuard | None = None,
    spec_hash: str | None = None,
) -> ExperimentOutcome:
    """
    Run every stage of the experiment over ``store``; stored stages are reused.

    Args:
        spec: the experiment.
        dataset: gives the dataset, called each time a stage needs it (never when every such stage is
            stored); the first call is the load stage. It should load once and keep the result (the
            CLI's loader does; later calls may give another ``Dataset`` with the same content, such
            as the parse cache's mapped columns in place of the parsed ones).
        backend: what answers and fine-tunes.
        store: the run store (in memory, or the CLI's run directory).
        data_fingerprint: identifies the dataset's content for the load key.
        version: llmrec's version (part of the cheap stages' keys).
        progress: where stages report progress.
        wait: called between polls of fine-tune jobs and batches (the CLI sleeps; tests do not).
        workers: processes for the parallel stages when no ``executor`` is given.
        executor: where the parallel stages run their tasks (``llmrec.executor``; results do not
            depend on it).
        source: the spec's name, for messages.
        paid: whether the backend charges money (then too-small variants refuse to start).
        allow_small: run a paid backend even when a variant has fewer than ``min_test_users``.
        price: dollars for a model's usage (training as ``Usage(trained_tokens, 0)`` of the model
            ``training:<base>``), recorded as each paid stage's spend for ``llmrec status``.
        budget: the run's spending guard (the one the backend's chat and batch share): with ``price``,
            each fine-tune's worst case (its training and validation tokens times the epochs) is
            reserved before its job is submitted or re-attached, and settled with the trained tokens.
        spec_hash: the spec's hash for the fine-tune jobs' metadata (default: the parsed spec's hash).

    Returns:
        The outcome, with the stage runs.

    Raises:
        DataError: when a variant has no test (or training) users, or too few for a paid run.
        ProviderError: when a backend fails or lacks a capability the spec needs.
    """
    executor = executor or executor_for(workers)
    cheap = _cheap_stages(
        spec,
        dataset,
        store=store,
        data_fingerprint=data_fingerprint,
        version=version,
        progress=progress,
        executor=executor,
        source=source,
    )
    stages, plans, key_data, seeds, loaded = (
        cheap.stages,
        cheap.plans,
        cheap.key_data,
        cheap.seeds,
        cheap.loaded,
    )
    kind = spec.provider.kind
    _refuse_small(spec, plans, paid=paid, allow_small=allow_small, source=source)
    jobs = _finetune_all(
        spec, backend, stages, plans, progress, wait, price, budget, spec_hash or section_hash(spec)[:16]
    )
    plans = [attrs.evolve(p, model=p.model or dict(jobs)[p.label].model) for p in plans]

    names = metric_names(spec.evaluation.k, extended=spec.evaluation.extended_metrics)
    mode = (
        spec.provider.openai.mode
        if kind == "openai"
        else spec.provider.fake.mode
        if kind == "fake"
        else "sync"
    )
    fitted: dict[tuple[int, int | None], baselines_stage.SeedFits] = {}
    inputs: dict[str, str] = {}
    per_seed: dict[int, list[evaluate_stage.VariantInputs]] = {s: [] for s in seeds}
    tally = _Tally()
    models: list[tuple[str, str, str]] = []
    for plan in plans:
        llms: list[evaluate_stage.LLMAnswers] = []
        roles = _roles(spec)
        for role, role_label in roles:
            model = plan.model if role == "finetuned" else spec.finetune.base_model
            assert model is not None
            requests = _requests(spec, plan, role, model)
            stage = f"infer/{plan.label}/{role}"
            i_key = infer_stage.key(backend.identity, mode, requests, stage)
            answers = _infer(
                stages, stage, i_key, requests, backend, mode, progress, wait, tally.known, price
            )
            tally.add(model, requests, answers)
            inputs[stage] = i_key
            llms.append(
                evaluate_stage.LLMAnswers(role, role_label, model, tuple(requests), answers.by_fingerprint)
            )
            models.append((plan.label, role, model))
        lists = None
        if spec.evaluation.baselines:
            b_key = baselines_stage.key(
                spec.evaluation,
                spec.prompt.n_recommendations,
                plan.seed,
                plan.variant,
                {"sample": plan.sample_key, "truth": plan.truth_key, "data": key_data},
                version,
            )
            stage = f"baselines/{plan.label}"
            lists = stages.cached(
                stage,
                "baselines",
                b_key,
                lambda plan=plan, stage=stage: baselines_stage.compute(  # type: ignore[misc]
                    spec.evaluation,
                    spec.prompt.n_recommendations,
                    plan.seed,
                    loaded,
                    plan.sampled,
                    plan.truth,
                    plan.files,
                    fitted,
                    lambda k, n, stage=stage: progress(stage, k, n),  # type: ignore[misc]
                    executor,
                ),
                baselines_stage.save,
                baselines_stage.load,
                lambda v: {"baselines": len(v.kinds)},
            )
            inputs[stage] = b_key
        inputs[f"ground_truth/{plan.label}"] = plan.truth_key
        inputs[f"training_files/{plan.label}"] = plan.files_key
        per_seed[plan.seed].append(
            evaluate_stage.VariantInputs(
                plan.variant,
                spec.variant_sampling(_variant(spec, plan.variant)),
                plan.sampled,
                plan.truth,
                plan.files,
                tuple(llms),
                lists,
            )
        )

    e_key = evaluate_stage.key(spec, inputs, version)

    def evaluate() -> evaluate_stage.Evaluated:
        ds = loaded()
        matcher = TitleMatcher(ds.movies)
        percentiles = popularity_percentiles(ds.ratings, int(ds.movies.ids.max()) + 1)
        runs = [
            evaluate_stage.score_seed(
                attrs.evolve(spec, experiment=attrs.evolve(spec.experiment, seed=seed)),
                seed,
                names,
                per_seed[seed],
                ds.movies,
                matcher,
                percentiles,
                ds.ratings,
            )
            for seed in seeds
        ]
        return evaluate_stage.combine_seeds(seeds if spec.experiment.seeds else [], runs)

    progress("evaluate", 0, 1)
    evaluated = stages.cached(
        "evaluate",
        "evaluate",
        e_key,
        evaluate,
        evaluate_stage.save,
        evaluate_stage.load,
        lambda v: {"predictions": len(v.predictions)},
    )
    progress("evaluate", 1, 1)
    return ExperimentOutcome(
        results=attrs.evolve(evaluated.results, title=spec.report.title),
        predictions=evaluated.predictions,
        jobs=tuple((label, f.state) for label, f in jobs),
        events=tuple((label, f.events) for label, f in jobs),
        steps=tuple((label, f.steps) for label, f in jobs),
        usage_by_model=tuple(tally.by_model.items()),
        models=tuple(models),
        usage=dict(tally.usage),
        stages=tuple(_with_load(stages.runs, key_data)),
        repeated_requests=tally.repeated,
        reused_answers=tally.reused,
    )


@attrs.define
class _Tally:
    """
    What the inference stages of a run add up to: tokens (all, and per model), answers reused and
    requests sent again, and every answer so far by fingerprint (so none is ever asked twice).
    """

    usage: dict[str, int] = attrs.field(
        factory=lambda: {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
        }
    )
    by_model: dict[str, Usage] = attrs.field(factory=dict)
    known: dict[str, ChatResult] = attrs.field(factory=dict)
    repeated: int = 0
    reused: int = 0

    def add(self, model: str, requests: Sequence[ChatRequest], answers: infer_stage.Answers) -> None:
        """
        Count one LLM column's answers.
        """
        self.known.update(answers.by_fingerprint)
        self.repeated += answers.repeated
        self.reused += answers.reused
        for r in requests:
            u = answers.by_fingerprint[infer_stage.fingerprint(r)].usage
            for field in self.usage:
                self.usage[field] += int(getattr(u, field))
            seen = self.by_model.get(model, Usage(0, 0, mode=u.mode))
            self.by_model[model] = Usage(
                prompt_tokens=seen.prompt_tokens + u.prompt_tokens,
                completion_tokens=seen.completion_tokens + u.completion_tokens,
                cached_tokens=seen.cached_tokens + u.cached_tokens,
                reasoning_tokens=seen.reasoning_tokens + u.reasoning_tokens,
                mode=u.mode,
            )


def _infer(
    stages: Stages,
    stage: str,
    key: str,
    requests: Sequence[ChatRequest],
    backend: Backend,
    mode: str,
    progress: Progress,
    wait: Callable[[], None],
    known: Mapping[str, ChatResult],
    price: Callable[[str, Usage], float] | None = None,
) -> infer_stage.Answers:
    """
    One LLM column's answers: from its stored log, from the run's other answers, else asked (sync,
    or through batches when the spec says so and the backend offers them); recorded when new.
    """
    folder = stages.dir(stage, key)
    done = folder.record is not None
    begun = time.monotonic()
    if mode == "batch" and backend.batch is not None and not done:
        answers = infer_stage.run_batch(folder, requests, backend.batch, progress, stage, wait)
    else:
        answers = infer_stage.run_sync(folder, requests, backend.chat, progress, stage, known=known)
    seconds = time.monotonic() - begun
    if done:
        stages.runs.append(StageRun(stage, "infer", key, computed=False, seconds=seconds))
        return answers
    model = requests[0].model if requests else ""
    spend = 0.0
    if price is not None:
        fresh = {infer_stage.fingerprint(r) for r in requests}
        spend = sum(price(model, a.usage) for fp, a in answers.by_fingerprint.items() if fp in fresh)
    stages.finish(
        folder,
        stage,
        "infer",
        seconds,
        answers,
        lambda a: {"answers": len(a.by_fingerprint), "reused": a.reused, "repeated": a.repeated},
        lambda a: {"model": model, "mode": mode},
        spend_usd=spend,
    )
    return answers


def _with_load(runs: Sequence[StageRun], key_data: str) -> list[StageRun]:
    """
    The stage runs, with the load stage first even when no stage needed the dataset this time.
    """
    if any(r.kind == "load" for r in runs):
        return list(runs)
    return [StageRun("load", "load", key_data, computed=False, seconds=0.0), *runs]


def _variant(spec: Spec, name: str) -> Any:
    return next(v for v in spec.variant if v.name == name)


def _requests(spec: Spec, plan: _Plan, role: ModelRole, model: str) -> list[ChatRequest]:
    """
    One request per test member of the plan for an LLM column (its position is its key).
    """
    shots = [(list(a), list(b)) for a, b in plan.files.shots] if role == "few_shot" else []
    settings = spec.provider.openai
    reasoning = spec.provider.kind == "openai" and settings.request_profile == "reasoning"
    out = []
    for n, titles in enumerate(plan.files.prompts):
        messages = (
            build_few_shot_messages(list(titles), shots, spec.prompt)
            if role == "few_shot"
            else build_messages(list(titles), spec.prompt)
        )
        out.append(
            ChatRequest(
                key=f"r{n}",
                model=model,
                messages=messages,
                temperature=None if reasoning else spec.inference.temperature,
                seed=None if reasoning else spec.inference_seed,
                response_format="json" if spec.prompt.output_mode == "json" else "text",
                max_tokens=spec.inference.max_completion_tokens,
                reasoning_effort=settings.reasoning_effort if reasoning else None,
            )
        )
    return out


def _refuse_small(spec: Spec, plans: Sequence[_Plan], *, paid: bool, allow_small: bool, source: str) -> None:
    if not paid or allow_small:
        return
    small = [
        f"{p.label} ({len(p.files.members['test'])} test users)"
        for p in plans
        if len(p.files.members["test"]) < spec.evaluation.min_test_users
    ]
    if small:
        msg = (
            f"{', '.join(small)}: fewer than evaluation.min_test_users = "
            f"{spec.evaluation.min_test_users}, too few to mean anything; a paid run refuses to start "
            "(pass --allow-small to run anyway)"
        )
        raise DataError(msg, path=source)


def _finetune_all(
    spec: Spec,
    backend: Backend,
    stages: Stages,
    plans: Sequence[_Plan],
    progress: Progress,
    wait: Callable[[], None],
    price: Callable[[str, Usage], float] | None = None,
    budget: BudgetGuard | None = None,
    spec_hash: str = "",
) -> list[tuple[str, finetune_stage.FineTuned]]:
    """
    Every plan's fine-tune: stored ones loaded; the others attached or submitted, all before any is
    polled, then polled in turn until every one has ended. With a budget and a price, every
    unfinished job's worst case is reserved before the first is submitted (``BudgetExceeded`` then
    stops the run before anything is trained), and settled with its trained tokens when it ends.
    """
    kind = spec.provider.kind
    hyper = finetune_stage.hyperparameters(spec.finetune, kind)
    done: list[tuple[str, finetune_stage.FineTuned]] = []
    todo: list[tuple[finetune_stage.Plan, float]] = []
    for plan in plans:
        if plan.model is not None:
            continue
        seed = spec.finetune.seed if spec.finetune.seed is not None else plan.seed
        key = finetune_stage.key(backend.identity, spec.finetune, hyper, seed, plan.files)
        stage = f"finetune/{plan.label}"
        folder = stages.dir(stage, key)
        if folder.record is not None:
            done.append((plan.label, finetune_stage.load(folder)))
            stages.runs.append(StageRun(stage, "finetune", key, computed=False, seconds=0.0))
            continue
        request = finetune_stage.request(
            spec.finetune,
            hyper,
            seed,
            plan.files,
            stage_key_=key,
            suffix=_suffix(spec.experiment.name, plan.label),
            metadata={"variant": plan.label, "experiment": spec.experiment.name, "spec_hash": spec_hash},
        )
        todo.append((finetune_stage.Plan(stage, plan.label, folder, request), time.monotonic()))
    if not todo:
        return done
    tuner = backend.finetune
    if tuner is None:
        msg = (
            f"the {kind} backend ({backend.identity}) cannot fine-tune; set finetune.model (or each "
            "[[variant]] model) to an already fine-tuned or served adapter model"
        )
        raise ProviderError(msg)
    base = spec.finetune.base_model
    reserved: dict[str, float] = {}
    try:
        if budget is not None and price is not None:
            for p, _ in todo:
                examples = (*p.request.training, *p.request.validation)
                worst = count_training(examples, base) * hyper.epochs
                reserved[p.stage] = budget.reserve(price(f"training:{base}", Usage(worst, 0)))
        attached = [(p, finetune_stage.attach(p, tuner), t) for p, t in todo]
    except BaseException:
        if budget is not None:
            for stage in list(reserved):
                budget.settle(reserved.pop(stage), 0.0)
        raise
    pending = list(attached)
    total = len(plans)
    polls = 0
    while pending:
        polls += 1
        still = []
        for p, job, t in pending:
            progress("fine-tune", len(done), total, note=f"{p.variant}: job {job.id}")
            try:
                finished = finetune_stage.poll(p, job, tuner)
            except ProviderError:
                if budget is not None and p.stage in reserved:
                    budget.settle(reserved.pop(p.stage), 0.0)
                raise
            if finished is None:
                still.append((p, job, t))
                continue
            done.append((p.variant, finished))
            spent = (
                price(f"training:{base}", Usage(finished.state.trained_tokens or 0, 0))
                if price is not None
                else 0.0
            )
            if budget is not None and p.stage in reserved:
                budget.settle(reserved.pop(p.stage), spent)
            stages.finish(
                p.folder,
                p.stage,
                "finetune",
                time.monotonic() - t,
                finished,
                lambda f: {"trained_tokens": f.state.trained_tokens or 0, "events": len(f.events)},
                lambda f, job=job: {"job": job.id, "model": f.model},  # type: ignore[misc]
                spend_usd=spent,
            )
        pending = still
        for _ in range(poll_backoff(polls) if pending else 0):
            wait()
    progress("fine-tune", len(done), total)
    return done


def estimate_run(
    spec: Spec,
    dataset: Callable[[], Dataset],
    *,
    store: RunStore,
    data_fingerprint: str,
    version: str,
    prices: PriceTable,
    progress: Progress = no_progress,
    workers: int = 1,
    executor: Executor | None = None,
    source: str = "<spec>",
) -> tuple[CostEstimate, tuple[str, ...]]:
    """
    Run the cheap stages only (stored like any run's, so the real run reuses them) and price the
    fine-tunes and the inference they lead to.

    Returns:
        The estimate and the funnel lines (one per variant and seed).
    """
    executor = executor or executor_for(workers)
    cheap = _cheap_stages(
        spec,
        dataset,
        store=store,
        data_fingerprint=data_fingerprint,
        version=version,
        progress=progress,
        executor=executor,
        source=source,
    )
    kind = spec.provider.kind
    mode: BillingMode = "batch" if kind == "openai" and spec.provider.openai.mode == "batch" else "sync"
    hyper = finetune_stage.hyperparameters(spec.finetune, kind)
    training: list[TrainingPlan] = []
    inference: list[InferencePlan] = []
    funnel: list[str] = []
    base = spec.finetune.base_model
    for plan in cheap.plans:
        m = plan.files.members
        funnel.append(
            f"{plan.label}: {plan.sampled.sample.eligible:,} eligible, {len(plan.sampled.sample.users):,} "
            f"sampled, {int(plan.truth.kept.sum()):,} with ground truth (train {len(m['train']):,} / "
            f"validation {len(m['validation']):,} / test {len(m['test']):,})"
        )
        examples = plan.files.examples("train")
        expected = expected_output_tokens(examples, base) if examples else 0
        if plan.model is None:
            training.append(
                TrainingPlan(plan.label, base, examples, plan.files.examples("validation"), hyper.epochs)
            )
        finetuned = plan.model or (base if base.startswith("ft:") else f"ft:{base}")
        roles = _roles(spec)
        for role, _ in roles:
            model = finetuned if role == "finetuned" else base
            item: InferenceItem = (
                "inference fine-tuned"
                if role == "finetuned"
                else "inference few-shot"
                if role == "few_shot"
                else "inference zero-shot"
            )
            requests = tuple(_requests(spec, plan, role, model))
            inference.append(InferencePlan(plan.label, item, model, requests, expected, mode))
    estimate = estimate_cost(training, inference, prices, kind=kind)
    return estimate, tuple(funnel)


def expected_stages(spec: Spec) -> list[str]:
    """
    The stage instances a run of ``spec`` has (for ``llmrec status``: the ones not started yet are
    "missing"). A variant with a given model has no fine-tune stage.
    """
    seeds = _seeds(spec)
    roles = [r for r, _ in _roles(spec)]
    out = ["load"]
    for seed in seeds:
        tag = "" if seed == spec.experiment.seed else f"@seed{seed}"
        out.append(f"sample{tag}")
        for variant in spec.variant:
            label = variant.name + tag
            given = variant.model or (spec.finetune.model if len(spec.variant) == 1 else None)
            out += [f"ground_truth/{label}", f"training_files/{label}"]
            out += [] if given else [f"finetune/{label}"]
            out += [f"infer/{label}/{role}" for role in roles]
            out += [f"baselines/{label}"] if spec.evaluation.baselines else []
    return [*out, "evaluate"]
