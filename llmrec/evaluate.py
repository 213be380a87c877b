"""
The experiment's plan, run against a provider it is given, and scored.

``run_experiment(spec, dataset, provider, ...)`` samples users, derives each variant's ground truth,
fine-tunes (or reuses a given fine-tuned model), asks the zero-shot base model and the fine-tuned
model for recommendations for every test user, and scores them. The provider is passed in, never
constructed here; polling waits through the ``wait`` callable (the CLI sleeps, tests do not); each
chat result goes to ``store`` as it arrives, before it is used.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import numpy as np

from llmrec.baselines import (
    Baseline,
    Interactions,
    fit_ease,
    fit_item_knn,
    fit_popular,
    fit_random,
    interactions_from_pairs,
    interactions_from_ratings,
)
from llmrec.data import Dataset, Movies
from llmrec.errors import ProviderError
from llmrec.ground_truth import future_ground_truth, knn_ground_truth
from llmrec.metrics import hits, ideal_scores, metric_names, score_list
from llmrec.parsing import AnswerFlags, ParsedList, TitleMatcher, answer_flags, parse_recommendations
from llmrec.prompts import build_example, build_few_shot_messages, build_messages
from llmrec.providers.base import (
    ChatRequest,
    ChatResult,
    FineTuneExample,
    FineTuneJob,
    FineTuneRequest,
    Hyperparameters,
    JobState,
    Provider,
)
from llmrec.results import (
    STATS,
    Comparison,
    Funnel,
    ModelRole,
    ModelScores,
    Results,
    SeedSpread,
    VariantResults,
)
from llmrec.sampling import (
    GroundTruth,
    RatingIndex,
    Sample,
    SplitName,
    assign_splits,
    build_index,
    derive_ground_truth,
    sample_users,
)
from llmrec.scoring import MATCH_MODES, beyond_accuracy, grounding_rates, popularity_percentiles, ranked_ids
from llmrec.spec import SamplingSpec, Spec, VariantSpec
from llmrec.stats import bootstrap_mean_ci, compare_paired, derive_seed, holm

__all__ = [
    "CompletionStore",
    "ExperimentOutcome",
    "MemoryStore",
    "Progress",
    "ranked_ids",
    "request_fingerprint",
    "run_experiment",
    "run_finetune",
]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while a long stage runs."""

_ROLES: tuple[tuple[ModelRole, str], ...] = (("baseline", "Baseline"), ("finetuned", "Fine-tuned"))


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def _no_wait() -> None:
    return None


def request_fingerprint(request: ChatRequest) -> str:
    """
    A key for a chat request's content (model, messages, temperature, seed), not its caller key.

    Two requests with the same fingerprint get the same answer from a deterministic provider, so a
    stored result can stand in for a repeated call.
    """
    payload = json.dumps(
        [request.model, [[m.role, m.content] for m in request.messages], request.temperature, request.seed],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CompletionStore(Protocol):
    """
    Where chat results are kept as they arrive, and found again on a rerun.
    """

    def get(self, fingerprint: str) -> ChatResult | None:
        """
        The stored result for a request fingerprint, or None.
        """
        ...

    def put(self, fingerprint: str, result: ChatResult) -> None:
        """
        Keep a result; called once per result, as soon as it arrives.
        """
        ...


class MemoryStore:
    """
    A ``CompletionStore`` in memory (the default; the CLI uses a file-backed one).
    """

    def __init__(self) -> None:
        self.results: dict[str, ChatResult] = {}

    def get(self, fingerprint: str) -> ChatResult | None:
        """
        The stored result for a request fingerprint, or None.
        """
        return self.results.get(fingerprint)

    def put(self, fingerprint: str, result: ChatResult) -> None:
        """
        Keep a result.
        """
        self.results[fingerprint] = result


@attrs.frozen
class ExperimentOutcome:
    """
    What a run produced: the scores, one prediction record per (test user, variant, model), the
    fine-tune job states and the token usage.
    """

    results: Results
    predictions: tuple[Mapping[str, Any], ...]
    jobs: tuple[tuple[str, JobState], ...]
    models: tuple[tuple[str, str, str], ...]
    """(variant, role, model id) for every scored model."""
    usage: Mapping[str, int]


def run_finetune(
    provider: Provider,
    request: FineTuneRequest,
    *,
    wait: Callable[[], None] = _no_wait,
    max_polls: int = 100_000,
    on_submit: Callable[[FineTuneJob], None] | None = None,
    job: FineTuneJob | None = None,
) -> JobState:
    """
    Submit a fine-tune (or resume polling ``job``) and poll it until it ends.

    Args:
        provider: the provider.
        request: the fine-tune request.
        wait: called between polls (the CLI sleeps here; tests pass nothing).
        max_polls: give up after this many polls.
        on_submit: called with the job handle right after submission, so it can be stored.
        job: an already submitted job to poll instead of submitting again.

    Returns:
        The final state, with the model id.

    Raises:
        ProviderError: when the job fails, is cancelled, or does not finish within ``max_polls``.
    """
    if job is None:
        job = provider.submit_finetune(request)
        if on_submit is not None:
            on_submit(job)
    for _ in range(max_polls):
        state = provider.poll_finetune(job)
        if state.done:
            if state.status != "succeeded" or state.model is None:
                detail = state.error or (state.events[-1] if state.events else "no detail")
                msg = f"fine-tune job {job.id} ended {state.status}: {detail}"
                raise ProviderError(msg)
            return state
        wait()
    msg = f"fine-tune job {job.id} did not finish after {max_polls} polls"
    raise ProviderError(msg)


@attrs.frozen(eq=False)
class _Shared:
    """
    What every seed's run of one experiment shares: the rating index, the title matcher, the movies'
    popularity percentiles, and the worker count for the ground truth.
    """

    index: RatingIndex
    matcher: TitleMatcher
    percentiles: np.ndarray[Any, np.dtype[np.float64]]
    workers: int


@attrs.frozen
class _VariantPlan:
    spec: VariantSpec
    sampling: SamplingSpec
    truth: GroundTruth
    kept: np.ndarray[Any, np.dtype[np.bool_]]
    profiles: tuple[np.ndarray[Any, np.dtype[np.int32]], ...]
    """The profiles prompted with (the sample's, or earlier-ratings profiles for "future")."""
    titles: list[list[str]]
    """The profiles as display titles."""


def run_experiment(
    spec: Spec,
    dataset: Dataset,
    provider: Provider,
    *,
    wait: Callable[[], None] = _no_wait,
    store: CompletionStore | None = None,
    progress: Progress = _no_progress,
    index: RatingIndex | None = None,
    on_job: Callable[[str, FineTuneJob], None] | None = None,
    resume_jobs: Mapping[str, FineTuneJob] | None = None,
    workers: int = 1,
) -> ExperimentOutcome:
    """
    Run the whole experiment against ``provider`` and score it; repeat it for ``experiment.seeds``.

    With ``experiment.seeds``, every other seed reruns sampling, fine-tuning and scoring on the same
    dataset; the results keep the tables of ``experiment.seed`` and add each model's metrics across
    the seeds (``Results.spread``). Fine-tune jobs of another seed are keyed ``<variant>@seed<N>``.

    Args:
        spec: the experiment.
        dataset: ratings and catalogue.
        provider: the provider to fine-tune and ask (chosen by the caller).
        wait: called between fine-tune polls.
        store: where chat results are stored as they arrive and found again on a rerun.
        progress: called as stages advance.
        index: a prebuilt ``build_index(dataset.ratings)``, to skip rebuilding it.
        on_job: called with (variant, job) right after a fine-tune is submitted.
        resume_jobs: already submitted jobs by variant name, polled instead of submitting again.
        workers: processes for the neighbour ground truth (``derive_ground_truth``); the caller
            chooses, from the cores it may use.

    Returns:
        The results, predictions (each with its ``seed``), job states, model ids and token usage.

    Raises:
        ProviderError: when fine-tuning or a completion fails.
    """
    store = store if store is not None else MemoryStore()
    index = index if index is not None else build_index(dataset.ratings)
    shared = _Shared(
        index=index,
        matcher=TitleMatcher(dataset.movies),
        percentiles=popularity_percentiles(dataset.ratings, int(dataset.movies.ids.max()) + 1),
        workers=workers,
    )
    first = _run_one(spec, dataset, provider, wait, store, progress, shared, on_job, resume_jobs or {}, "")
    others = [s for s in dict.fromkeys(spec.experiment.seeds) if s != spec.experiment.seed]
    if not spec.experiment.seeds:
        return first
    runs = [first]
    for seed in others:
        again = attrs.evolve(spec, experiment=attrs.evolve(spec.experiment, seed=seed))
        runs.append(
            _run_one(
                again,
                dataset,
                provider,
                wait,
                store,
                progress,
                shared,
                on_job,
                resume_jobs or {},
                f"@seed{seed}",
            )
        )
    seeds = (spec.experiment.seed, *others)
    spread = tuple(
        SeedSpread(
            variant=variant.name,
            label=model.label,
            metric=name,
            values=tuple(run.results.variants[v].models[m].metric(name) for run in runs),
        )
        for v, variant in enumerate(first.results.variants)
        for m, model in enumerate(variant.models)
        for name in first.results.metric_names
    )
    usage = {key: sum(run.usage[key] for run in runs) for key in first.usage}
    return ExperimentOutcome(
        results=attrs.evolve(first.results, seeds=seeds, spread=spread),
        predictions=tuple(p for run in runs for p in run.predictions),
        jobs=tuple(j for run in runs for j in run.jobs),
        models=tuple(m for run in runs for m in run.models),
        usage=usage,
    )


def _run_one(
    spec: Spec,
    dataset: Dataset,
    provider: Provider,
    wait: Callable[[], None],
    store: CompletionStore,
    progress: Progress,
    shared: _Shared,
    on_job: Callable[[str, FineTuneJob], None] | None,
    resume_jobs: Mapping[str, FineTuneJob],
    job_suffix: str,
) -> ExperimentOutcome:
    """
    One run of the experiment with ``spec.experiment.seed``; ``job_suffix`` keys its fine-tune jobs.
    """
    seed = spec.experiment.seed
    index, matcher, percentiles = shared.index, shared.matcher, shared.percentiles
    sample = sample_users(index, spec.sampling, seed)
    splits = assign_splits(sample.users, spec.split, seed)
    movies = dataset.movies
    names = metric_names(spec.evaluation.k, extended=spec.evaluation.extended_metrics)
    # Fitted on the ratings without the test users, the baselines are the same for every variant
    # (a user's split does not depend on the variant): fit them once, on first use.
    ratings_baselines: list[Baseline] | None = None

    plans: list[_VariantPlan] = []
    for i, variant in enumerate(spec.variant):
        sampling = spec.variant_sampling(variant)
        progress(f"ground truth {variant.name}", i, len(spec.variant))
        if sampling.ground_truth == "future":
            profiles, truth = future_ground_truth(index, sample, sampling, variant=variant.name)
        elif sampling.ground_truth == "knn":
            profiles, truth = knn_ground_truth(index, sample, sampling, variant=variant.name)
        else:
            profiles = sample.profiles
            truth = derive_ground_truth(
                index, sample, sampling, seed, variant=variant.name, workers=shared.workers
            )
        kept = np.array([len(m) > 0 for m in truth.movies], dtype=bool)
        titles = [[movies.display(int(m)) for m in p] for p in profiles]
        plans.append(_VariantPlan(variant, sampling, truth, kept, profiles, titles))
    progress("ground truth", len(spec.variant), len(spec.variant))

    variants_out: list[VariantResults] = []
    predictions: list[Mapping[str, Any]] = []
    jobs: list[tuple[str, JobState]] = []
    models: list[tuple[str, str, str]] = []
    usage = {"prompt_tokens": 0, "completion_tokens": 0}

    for plan in plans:
        name = plan.spec.name
        members = {
            s: [i for i in range(len(sample.users)) if plan.kept[i] and splits[i] == s] for s in _SPLITS
        }

        def examples(rows: Sequence[int], plan: _VariantPlan = plan) -> tuple[FineTuneExample, ...]:
            return tuple(
                build_example(
                    plan.titles[i], [movies.display(int(m)) for m in plan.truth.movies[i]], spec.prompt
                )
                for i in rows
            )

        model = plan.spec.model or (spec.finetune.model if len(spec.variant) == 1 else None)
        if model is None:
            request = FineTuneRequest(
                base_model=spec.finetune.base_model,
                training=examples(members["train"]),
                validation=examples(members["validation"]),
                hyperparameters=Hyperparameters(
                    batch_size=spec.finetune.batch_size,
                    epochs=spec.finetune.epochs,
                    learning_rate_multiplier=spec.finetune.learning_rate_multiplier,
                ),
                suffix=_suffix(spec.experiment.name, name),
            )
            progress(f"fine-tune {name}", 0, 1)

            job_key = name + job_suffix

            def submitted(job: FineTuneJob, key: str = job_key) -> None:
                if on_job is not None:
                    on_job(key, job)

            state = run_finetune(
                provider, request, wait=wait, on_submit=submitted, job=resume_jobs.get(job_key)
            )
            progress(f"fine-tune {name}", 1, 1)
            jobs.append((job_key, state))
            assert state.model is not None  # run_finetune guarantees it
            model = state.model

        test_rows = members["test"]
        role_models = {
            "baseline": spec.finetune.base_model,
            "finetuned": model,
            "few_shot": spec.finetune.base_model,
        }
        llm_roles = _ROLES + ((("few_shot", "Few-shot"),) if spec.prompt.few_shot > 0 else ())
        shots = _few_shot_examples(spec, plan, members["train"], movies, name)
        requests: dict[str, tuple[ChatRequest, int, ModelRole]] = {}
        for role, _ in llm_roles:
            for i in test_rows:
                if role == "few_shot":
                    messages = build_few_shot_messages(plan.titles[i], shots, spec.prompt)
                else:
                    messages = build_messages(plan.titles[i], spec.prompt)
                req = ChatRequest(
                    key=f"r{len(requests)}",
                    model=role_models[role],
                    messages=messages,
                    temperature=spec.inference.temperature,
                    seed=spec.inference_seed,
                    response_format="json" if spec.prompt.output_mode == "json" else "text",
                )
                requests[req.key] = (req, i, role)
        answers = _complete(
            provider, [r for r, *_ in requests.values()], store, progress, f"inference {name}"
        )
        for result in answers.values():
            usage["prompt_tokens"] += result.usage.prompt_tokens
            usage["completion_tokens"] += result.usage.completion_tokens

        scored: list[_Scored] = [_Scored(role, label, role_models[role], None) for role, label in llm_roles]
        by_role = {entry.role: entry for entry in scored}
        evaluation = spec.evaluation
        for req, i, role in requests.values():
            truth_ids = [int(m) for m in plan.truth.movies[i]]
            relevant = frozenset(truth_ids)
            text = answers[req.key].text
            parsed = parse_recommendations(
                text, matcher, spec.prompt.n_recommendations, fuzzy_threshold=evaluation.fuzzy_threshold
            )
            entry = by_role[role]
            for mode in MATCH_MODES:
                by_mode = ranked_ids(parsed, relevant, mode)
                mode_scores = score_list(by_mode, relevant, names)
                entry.sensitivity.setdefault(mode, []).append(mode_scores)
                if mode == evaluation.matching:
                    ranked, scores = by_mode, mode_scores
            entry.add(scores, ranked)
            entry.failures += parsed.failure is not None
            entry.flags.append(
                answer_flags(parsed, [int(m) for m in plan.profiles[i]], spec.prompt.n_recommendations)
            )
            predictions.append(
                _prediction(
                    variant=name,
                    seed=seed,
                    role=role,
                    model=role_models[role],
                    user=int(sample.users[i]),
                    profile=[int(m) for m in plan.profiles[i]],
                    profile_titles=plan.titles[i],
                    truth=truth_ids,
                    truth_titles=[movies.display(m) for m in truth_ids],
                    text=text,
                    parsed=parsed,
                    ranked=ranked,
                    relevant=relevant,
                    names=names,
                    scores=scores,
                )
            )

        if spec.evaluation.baselines:
            progress(f"baselines {name}", 0, len(spec.evaluation.baselines))
            if spec.evaluation.baseline_fit == "train_pairs":
                train = members["train"]
                fitted = _fit_baselines(
                    spec,
                    dataset,
                    interactions_from_pairs(
                        [plan.profiles[i] for i in train], [plan.truth.movies[i] for i in train]
                    ),
                )
            else:
                if ratings_baselines is None:
                    test_users = sample.users[np.array([s == "test" for s in splits], dtype=bool)]
                    interactions = interactions_from_ratings(dataset.ratings, exclude_users=test_users)
                    ratings_baselines = _fit_baselines(spec, dataset, interactions)
                fitted = ratings_baselines
            classic, classic_predictions = _classic_scores(
                spec, dataset, sample, plan, members, names, fitted
            )
            scored += classic
            predictions.extend(classic_predictions)
            progress(f"baselines {name}", len(spec.evaluation.baselines), len(spec.evaluation.baselines))
        ideal = _Scored("ideal", "Ideal", "best achievable", None)
        for i in test_rows:
            ideal.add(ideal_scores(names, len(plan.truth.movies[i]), spec.prompt.n_recommendations), [])
        model_scores = [_model_scores(entry, names, spec, name, percentiles, len(movies)) for entry in scored]
        model_scores.append(
            _model_scores(ideal, names, spec, name, percentiles, len(movies), intervals=False)
        )
        models.extend((name, role, role_models[role]) for role, _ in llm_roles)
        comparisons = _comparisons(scored, names, spec, name)
        counts = {
            "eligible_users": sample.eligible,
            "sampled_users": len(sample.users),
            "with_ground_truth": int(plan.kept.sum()),
            **{f"{s}_users": len(members[s]) for s in _SPLITS},
        }
        variants_out.append(
            VariantResults(
                name=name,
                sampling=tuple((f.name, getattr(plan.sampling, f.name)) for f in attrs.fields(SamplingSpec)),
                counts=tuple(counts.items()),
                models=tuple(model_scores),
                funnel=_funnel(plan.truth, plan.sampling.max_ground_truth),
                comparisons=comparisons,
                confidence=spec.evaluation.confidence,
            )
        )

    results = Results(
        experiment=spec.experiment.name,
        title=spec.report.title,
        metric_names=names,
        variants=tuple(variants_out),
        matching=spec.evaluation.matching,
    )
    return ExperimentOutcome(
        results=results, predictions=tuple(predictions), jobs=tuple(jobs), models=tuple(models), usage=usage
    )


_SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")


def _few_shot_examples(
    spec: Spec,
    plan: _VariantPlan,
    train: Sequence[int],
    movies: Movies,
    variant: str,
) -> list[tuple[Sequence[str], list[str]]]:
    """
    ``prompt.few_shot`` training users' (profile, ground truth) titles, drawn once per variant from a
    stream seeded by the experiment seed and the variant's name; never a test user.
    """
    k = min(spec.prompt.few_shot, len(train))
    if k == 0:
        return []
    rng = np.random.default_rng(derive_seed(spec.experiment.seed, f"{variant}/few-shot"))
    chosen = sorted(rng.choice(np.array(train), size=k, replace=False).tolist())
    return [(plan.titles[i], [movies.display(int(m)) for m in plan.truth.movies[i]]) for i in chosen]


@attrs.define
class _Scored:
    """
    One model's per-user scores on a variant's test users (rows aligned with the test users), with
    the scored lists and, for LLMs, each answer's flags and its scores under every matching mode.
    """

    role: ModelRole
    label: str
    model: str
    source: str | None
    rows: list[tuple[float, ...]] = attrs.field(factory=list)
    lists: list[list[int | None]] = attrs.field(factory=list)
    failures: int = 0
    flags: list[AnswerFlags] = attrs.field(factory=list)
    sensitivity: dict[str, list[tuple[float, ...]]] = attrs.field(factory=dict)

    def add(self, scores: tuple[float, ...], ranked: list[int | None]) -> None:
        """
        Record one user's scores and scored list.
        """
        self.rows.append(scores)
        self.lists.append(ranked)


_CLASSIC_LABELS = {"random": "Random", "popular": "MostPopular", "item_knn": "ItemKNN", "ease": "EASE"}


def _fit_baselines(spec: Spec, dataset: Dataset, interactions: Interactions) -> list[Baseline]:
    """
    The spec's classic baselines, in its order, fitted on a leakage-free source.

    The ground truth is a function of the profile and the full rating matrix, so a baseline never sees
    that matrix whole: ``interactions`` are either the training users' (profile -> ground truth) pairs
    or the ratings with every test user's ratings removed (test users of any variant: the split is per
    user). Random draws from the catalogue alone.
    """
    evaluation = spec.evaluation
    fitted: list[Baseline] = []
    for kind in evaluation.baselines:
        if kind == "random":
            fitted.append(
                fit_random(derive_seed(spec.experiment.seed, "baseline/random"), dataset.movies.ids)
            )
        elif kind == "popular":
            fitted.append(fit_popular(interactions))
        elif kind == "item_knn":
            fitted.append(fit_item_knn(interactions, n_items=evaluation.baseline_items))
        else:
            fitted.append(fit_ease(interactions, n_items=evaluation.baseline_items))
    return fitted


def _classic_scores(
    spec: Spec,
    dataset: Dataset,
    sample: Sample,
    plan: _VariantPlan,
    members: Mapping[SplitName, list[int]],
    names: Sequence[str],
    fitted: Sequence[Baseline],
) -> tuple[list[_Scored], list[dict[str, Any]]]:
    """
    Score each fitted classic baseline on the variant's test users; also return one prediction record
    per test user and baseline (its ranked movie ids).
    """
    n = spec.prompt.n_recommendations
    out: list[_Scored] = []
    records: list[dict[str, Any]] = []
    movies = dataset.movies
    for kind, baseline in zip(spec.evaluation.baselines, fitted, strict=True):
        entry = _Scored("classic", _CLASSIC_LABELS[kind], baseline.name, baseline.source)
        label = entry.label
        for i in members["test"]:
            truth = [int(m) for m in plan.truth.movies[i]]
            relevant = frozenset(truth)
            ranked: list[int | None] = list(baseline.recommend(plan.profiles[i], n))
            scores = score_list(ranked, relevant, names)
            entry.add(scores, ranked)
            records.append(
                {
                    "variant": plan.spec.name,
                    "seed": spec.experiment.seed,
                    "role": "classic",
                    "model": label,
                    "source": baseline.source,
                    "user": int(sample.users[i]),
                    "profile": [int(m) for m in plan.profiles[i]],
                    "ground_truth": truth,
                    "raw_text": None,
                    "parse_failure": None,
                    "items": [
                        {
                            "rank": rank,
                            "title": movies.display(int(m)) if m is not None else None,
                            "match": "id",
                            "movie_ids": [m],
                            "scored_as": m,
                            "hit": hit,
                        }
                        for rank, (m, hit) in enumerate(
                            zip(ranked, hits(ranked, relevant), strict=True), start=1
                        )
                    ],
                    "ranked": ranked,
                    "metrics": dict(zip(names, scores, strict=True)),
                }
            )
        out.append(entry)
    return out, records


def _means(rows: Sequence[tuple[float, ...]], names: Sequence[str]) -> tuple[tuple[str, float], ...]:
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return tuple((n, float(values[:, j].mean()) if len(values) else math.nan) for j, n in enumerate(names))


def _model_scores(
    entry: _Scored,
    names: Sequence[str],
    spec: Spec,
    variant: str,
    percentiles: np.ndarray[Any, np.dtype[np.float64]],
    catalogue_size: int,
    *,
    intervals: bool = True,
) -> ModelScores:
    """
    Means, bootstrap intervals, answer rates, matching sensitivity and coverage of one model.
    """
    evaluation = spec.evaluation
    values = np.array(entry.rows, dtype=np.float64).reshape(len(entry.rows), len(names))
    means = _means(entry.rows, names)
    found: list[tuple[str, float, float]] = []
    if intervals and len(values) >= 2:
        for j, n in enumerate(names):
            ci = bootstrap_mean_ci(
                values[:, j],
                resamples=evaluation.resamples,
                level=evaluation.confidence,
                seed=derive_seed(spec.experiment.seed, f"{variant}/{entry.label}/{n}/mean"),
            )
            found.append((n, float(ci.low), float(ci.high)))
    return ModelScores(
        role=entry.role,
        label=entry.label,
        model=entry.model,
        users=len(entry.rows),
        parse_failures=entry.failures,
        metrics=means,
        intervals=tuple(found),
        source=entry.source,
        grounding=grounding_rates(entry.flags) if entry.flags else (),
        sensitivity=tuple((mode, _means(rows, names)) for mode, rows in entry.sensitivity.items()),
        beyond=beyond_accuracy(entry.lists, catalogue_size, percentiles) if entry.role != "ideal" else (),
    )


def _comparisons(
    scored: Sequence[_Scored], names: Sequence[str], spec: Spec, variant: str
) -> tuple[Comparison, ...]:
    """
    Paired comparisons: fine-tuned vs zero-shot, and each LLM vs the best classic baseline (highest
    mean MAP), each with a bootstrap interval and a sign-flip p-value, Holm-adjusted across the rows.
    """
    by_role = {e.role: e for e in scored if e.role not in ("classic", "ideal")}
    classics = [e for e in scored if e.role == "classic" and e.rows]
    pairs = [(by_role["finetuned"], by_role["baseline"])]
    if "few_shot" in by_role:
        pairs.append((by_role["few_shot"], by_role["baseline"]))
    if classics:
        j = list(names).index("map") if "map" in names else 0
        best = max(classics, key=lambda e: (float(np.mean([r[j] for r in e.rows])), e.label))
        pairs += [(by_role[role], best) for role in ("finetuned", "few_shot", "baseline") if role in by_role]
    out: list[Comparison] = []
    evaluation = spec.evaluation
    for a, b in pairs:
        if len(a.rows) < 2:
            continue
        va = np.array(a.rows, dtype=np.float64)
        vb = np.array(b.rows, dtype=np.float64)
        found = [
            compare_paired(
                va[:, j],
                vb[:, j],
                seed=spec.experiment.seed,
                label=f"{variant}/{a.label}-vs-{b.label}/{n}",
                resamples=evaluation.resamples,
                permutations=evaluation.permutations,
                level=evaluation.confidence,
            )
            for j, n in enumerate(names)
        ]
        adjusted = holm([c.p_value for c in found])
        out += [
            Comparison(
                a=a.label,
                b=b.label,
                metric=n,
                users=c.users,
                mean_a=c.mean_a,
                mean_b=c.mean_b,
                difference=float(c.difference.estimate),
                low=float(c.difference.low),
                high=float(c.difference.high),
                p_value=c.p_value,
                p_holm=float(p),
            )
            for n, c, p in zip(names, found, adjusted, strict=True)
        ]
    return tuple(out)


def _stats(values: np.ndarray[Any, np.dtype[np.int64]]) -> tuple[tuple[str, float], ...]:
    if len(values) == 0:
        return tuple((name, math.nan) for name in STATS)
    p25, median, p75 = np.percentile(values, [25, 50, 75])
    numbers = (values.min(), p25, median, values.mean(), p75, values.max())
    return tuple((name, float(x)) for name, x in zip(STATS, numbers, strict=True))


def _funnel(truth: GroundTruth, max_size: int) -> Funnel:
    sizes = np.bincount(np.array([len(m) for m in truth.movies], dtype=np.int64), minlength=max_size + 1)
    return Funnel(
        neighbor_candidates=_stats(truth.candidates),
        neighbors_drawn=_stats(truth.drawn),
        ground_truth_sizes=tuple(int(n) for n in sizes),
    )


def _suffix(experiment: str, variant: str) -> str:
    raw = f"{experiment}-{variant}".lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw)[:40]


def _complete(
    provider: Provider,
    requests: Sequence[ChatRequest],
    store: CompletionStore,
    progress: Progress,
    stage: str,
) -> dict[str, ChatResult]:
    """
    Answers for every request, from the store where a rerun already has them, else from the provider
    (each stored as soon as it arrives).
    """
    answers: dict[str, ChatResult] = {}
    todo: list[ChatRequest] = []
    prints = {r.key: request_fingerprint(r) for r in requests}
    for r in requests:
        found = store.get(prints[r.key])
        if found is not None:
            answers[r.key] = attrs.evolve(found, key=r.key)
        else:
            todo.append(r)
    total = len(requests)
    progress(stage, len(answers), total)
    if todo:
        wanted = {r.key for r in todo}
        for result in provider.complete(todo):
            if result.key not in wanted:
                msg = f"provider answered an unknown request key {result.key!r}"
                raise ProviderError(msg)
            store.put(prints[result.key], result)
            answers[result.key] = result
            progress(stage, len(answers), total)
    missing = [r.key for r in requests if r.key not in answers]
    if missing:
        msg = f"provider returned no answer for {len(missing)} of {total} requests"
        raise ProviderError(msg)
    return answers


def _prediction(
    *,
    variant: str,
    seed: int,
    role: str,
    model: str,
    user: int,
    profile: list[int],
    profile_titles: list[str],
    truth: list[int],
    truth_titles: list[str],
    text: str,
    parsed: ParsedList,
    ranked: list[int | None],
    relevant: frozenset[int],
    names: Sequence[str],
    scores: Sequence[float],
) -> dict[str, Any]:
    return {
        "variant": variant,
        "seed": seed,
        "role": role,
        "model": model,
        "user": user,
        "profile": profile,
        "profile_titles": profile_titles,
        "ground_truth": truth,
        "ground_truth_titles": truth_titles,
        "raw_text": text,
        "answer_format": parsed.format,
        "parse_failure": parsed.failure,
        "items": [
            {
                "rank": rank,
                "text": item.text,
                "title": item.title,
                "year": item.year,
                "match": item.match,
                "fuzzy_score": item.score,
                "movie_ids": list(item.movie_ids),
                "scored_as": scored,
                "hit": hit,
            }
            for rank, (item, scored, hit) in enumerate(
                zip(parsed.items, ranked, hits(ranked, relevant), strict=True), start=1
            )
        ],
        "ranked": ranked,
        "metrics": dict(zip(names, scores, strict=True)),
    }
