"""
Stage ``evaluate``: every answer parsed and scored, every list measured, every comparison tested.

Reads the stored answers, baseline lists, ground truth and sample of every variant and seed, and the
``[evaluation]`` section; produces the ``Results`` (without the report's title, which only the
report stage reads) and one ``Prediction`` per (variant, seed, model, test user).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from llmrec.baselines import interactions_from_pairs
from llmrec.codec import CONVERTER, check_schema
from llmrec.data import Movies, Ratings, day_to_date
from llmrec.keys import stage_key
from llmrec.metrics import hits, ideal_scores, score_list
from llmrec.parsing import AnswerFlags, TitleMatcher, answer_flags, parse_recommendations
from llmrec.providers.base import ChatRequest, ChatResult
from llmrec.results import (
    PREDICTIONS_SCHEMA_VERSION,
    SCHEMA_VERSION,
    STATS,
    BaselineTuning,
    Comparison,
    Funnel,
    ModelRole,
    ModelScores,
    Popularity,
    Prediction,
    PredictionItem,
    Protocol,
    Results,
    SeedSpread,
    VariantResults,
)
from llmrec.sampling import GroundTruth
from llmrec.scoring import MATCH_MODES, beyond_accuracy, grounding_rates, ranked_ids
from llmrec.spec import SamplingSpec, Spec
from llmrec.stages.baselines import LABELS, BaselineLists
from llmrec.stages.ground_truth import Truth
from llmrec.stages.infer import fingerprint
from llmrec.stages.sample import SPLITS, Sampled
from llmrec.stages.training_files import TrainingFiles
from llmrec.stats import (
    PairedComparison,
    bootstrap_column_means,
    derive_seed,
    holm,
    percentile_interval,
    sign_flip_pvalues,
)
from llmrec.store import StageDir
from llmrec.text import safe_text

__all__ = [
    "Evaluated",
    "LLMAnswers",
    "VariantInputs",
    "combine_seeds",
    "fit_counts",
    "key",
    "paper_table_of",
    "protocol_of",
    "score_seed",
    "truth_popularity",
]


@attrs.frozen(eq=False)
class LLMAnswers:
    """
    One LLM column of a variant: its requests (aligned with the test members) and their answers.
    """

    role: ModelRole
    label: str
    model: str
    requests: tuple[ChatRequest, ...]
    answers: Mapping[str, ChatResult]
    """By request fingerprint."""


@attrs.frozen(eq=False)
class VariantInputs:
    """
    Everything one variant of one seed is scored from.
    """

    name: str
    sampling: SamplingSpec
    sampled: Sampled
    truth: Truth
    files: TrainingFiles
    llms: tuple[LLMAnswers, ...]
    baselines: BaselineLists | None


@attrs.frozen(eq=False)
class Evaluated:
    """
    The stage's output: results (no title) and predictions.
    """

    results: Results
    predictions: tuple[Prediction, ...]


def key(spec: Spec, inputs: Mapping[str, str], version: str) -> str:
    """
    The stage key: the evaluation section, the list length, the seeds and every input's key.
    """
    reads = {
        "evaluation": spec.evaluation,
        "n": spec.prompt.n_recommendations,
        "seed": spec.experiment.seed,
        "seeds": spec.experiment.seeds,
        "variants": [v.name for v in spec.variant],
    }
    if any(v.paper_table is not None for v in spec.variant):  # read only when set: older keys stay
        reads["paper_tables"] = [v.paper_table for v in spec.variant]
    return stage_key("evaluate", reads, inputs, version=version)


def paper_table_of(spec: Spec, name: str) -> int | None:
    """
    The ``paper_table`` of the spec's variant called ``name`` (or ``name@seed<n>``, a repeat's), if set.
    """
    for v in spec.variant:
        if name == v.name or name.startswith(f"{v.name}@seed"):
            return v.paper_table
    return None


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


def score_seed(
    spec: Spec,
    seed: int,
    names: Sequence[str],
    variants: Sequence[VariantInputs],
    movies: Movies,
    matcher: TitleMatcher,
    percentiles: np.ndarray[Any, np.dtype[np.float64]],
    ratings: Ratings | None = None,
) -> Evaluated:
    """
    Score every variant of one seed; with ``ratings`` (the dataset's), also each variant's
    ground-truth popularity in the baselines' fitting data.
    """
    evaluation = spec.evaluation
    n = spec.prompt.n_recommendations
    out: list[VariantResults] = []
    predictions: list[Prediction] = []
    shared_counts: dict[str, tuple[str, np.ndarray[Any, np.dtype[np.int64]]]] = {}
    for v in variants:
        test_rows = v.files.members["test"]
        truth = v.truth.truth
        popularity = None
        if ratings is not None:
            train = v.files.members["train"]
            shared = evaluation.baseline_fit == "ratings_without_test_users"  # one fit per seed and cut
            count_key = f"ratings<{v.truth.cut_day}" if shared else v.name
            if count_key not in shared_counts:
                shared_counts[count_key] = fit_counts(
                    evaluation.baseline_fit,
                    ratings,
                    test_users=v.sampled.sample.users[v.sampled.splits == 2],
                    train_profiles=[v.truth.profiles[i] for i in train],
                    train_truths=[truth.movies[i] for i in train],
                    cut_day=v.truth.cut_day,
                )
            source, per_movie = shared_counts[count_key]
            popularity = truth_popularity(
                per_movie, movies.ids, [truth.movies[i] for i in test_rows], source=source
            )
        scored: list[_Scored] = []
        # each test user's profile, ground truth and their titles, made once and shared by the
        # predictions of every model (at every eligible user there are hundreds of thousands)
        truths = [tuple(truth.movies[i].tolist()) for i in test_rows]
        relevants = [frozenset(t) for t in truths]
        profiles = [tuple(v.truth.profiles[i].tolist()) for i in test_rows]
        users = [int(v.sampled.sample.users[i]) for i in test_rows]
        truth_titles = [tuple(movies.display(m) for m in t) for t in truths] if v.llms else []
        profile_titles = [tuple(movies.display(m) for m in t) for t in profiles] if v.llms else []
        for llm in v.llms:
            entry = _Scored(llm.role, llm.label, llm.model, None)
            for row, request in zip(range(len(test_rows)), llm.requests, strict=True):
                truth_ids, relevant, profile = truths[row], relevants[row], profiles[row]
                result = llm.answers[fingerprint(request)]
                parsed = parse_recommendations(
                    result.text, matcher, n, fuzzy_threshold=evaluation.fuzzy_threshold
                )
                ranked: list[int | None] = []
                scores: tuple[float, ...] = ()
                for mode in MATCH_MODES:
                    by_mode = ranked_ids(parsed, relevant, mode)
                    mode_scores = score_list(by_mode, relevant, names)
                    entry.sensitivity.setdefault(mode, []).append(mode_scores)
                    if mode == evaluation.matching:
                        ranked, scores = by_mode, mode_scores
                entry.add(scores, ranked)
                entry.failures += parsed.failure is not None
                entry.flags.append(answer_flags(parsed, profile, n))
                predictions.append(
                    Prediction(
                        variant=v.name,
                        seed=seed,
                        role=llm.role,
                        model=llm.model,
                        user=users[row],
                        profile=profile,
                        profile_titles=profile_titles[row],
                        ground_truth=truth_ids,
                        ground_truth_titles=truth_titles[row],
                        raw_text=safe_text(result.text),
                        answer_format=parsed.format,
                        parse_failure=parsed.failure,
                        request_id=result.request_id,
                        items=tuple(
                            PredictionItem(
                                rank=rank,
                                text=item.text,
                                title=item.title,
                                year=item.year,
                                match=item.match,
                                fuzzy_score=item.score,
                                movie_ids=tuple(item.movie_ids),
                                scored_as=scored_as,
                                hit=hit,
                            )
                            for rank, (item, scored_as, hit) in enumerate(
                                zip(parsed.items, ranked, hits(ranked, relevant), strict=True), start=1
                            )
                        ),
                        ranked=tuple(ranked),
                        metrics=tuple(zip(names, scores, strict=True)),
                    )
                )
            scored.append(entry)
        if v.baselines is not None:
            for kind, name, source, lists in zip(
                v.baselines.kinds, v.baselines.names, v.baselines.sources, v.baselines.lists, strict=True
            ):
                entry = _Scored("classic", LABELS[kind], name, source)
                for row in range(len(test_rows)):
                    truth_ids, relevant = truths[row], relevants[row]
                    ranked_c: list[int | None] = [int(m) for m in lists[row]]
                    scores = score_list(ranked_c, relevant, names)
                    entry.add(scores, ranked_c)
                    predictions.append(
                        Prediction(
                            variant=v.name,
                            seed=seed,
                            role="classic",
                            model=LABELS[kind],
                            source=source,
                            user=users[row],
                            profile=profiles[row],
                            ground_truth=truth_ids,
                            items=tuple(
                                PredictionItem(
                                    rank=rank,
                                    title=movies.display(int(m)) if m is not None else None,
                                    match="id",
                                    movie_ids=(int(m),) if m is not None else (),
                                    scored_as=m,
                                    hit=hit,
                                )
                                for rank, (m, hit) in enumerate(
                                    zip(ranked_c, hits(ranked_c, relevant), strict=True), start=1
                                )
                            ),
                            ranked=tuple(ranked_c),
                            metrics=tuple(zip(names, scores, strict=True)),
                        )
                    )
                scored.append(entry)
        ideal = _Scored("ideal", "Ideal", "best achievable", None)
        for i in test_rows:
            ideal.add(ideal_scores(names, len(truth.movies[i]), n), [])
        resampled = _resampled(scored, names, spec, seed, v.name)
        model_scores = [
            _model_scores(e, names, spec, percentiles, len(movies), resampled.get(k))
            for k, e in enumerate(scored)
        ]
        model_scores.append(_model_scores(ideal, names, spec, percentiles, len(movies), None))
        members = v.files.members
        counts = {
            "eligible_users": v.sampled.sample.eligible,
            "sampled_users": len(v.sampled.sample.users),
            "with_ground_truth": int(v.truth.kept.sum()),
            **{f"{s}_users": len(members[s]) for s in SPLITS},
        }
        out.append(
            VariantResults(
                name=v.name,
                sampling=tuple((f.name, getattr(v.sampling, f.name)) for f in attrs.fields(SamplingSpec)),
                counts=tuple(counts.items()),
                models=tuple(model_scores),
                funnel=_funnel(truth, v.sampling.max_ground_truth),
                comparisons=_comparisons(
                    scored, resampled, names, spec, seed, v.name, v.baselines.tuning if v.baselines else None
                ),
                confidence=evaluation.confidence,
                min_test_users=evaluation.min_test_users,
                holm_family=evaluation.holm_family,
                popularity=popularity,
                protocol=protocol_of(v.sampling, v.truth.cut_day, ratings),
                tuning=v.baselines.tuning if v.baselines is not None else None,
                paper_table=paper_table_of(spec, v.name),
            )
        )
    results = Results(
        experiment=spec.experiment.name,
        title="",
        metric_names=tuple(names),
        variants=tuple(out),
        matching=evaluation.matching,
    )
    return Evaluated(results=results, predictions=tuple(predictions))


def combine_seeds(seeds: Sequence[int], runs: Sequence[Evaluated]) -> Evaluated:
    """
    The first seed's tables, each model's metrics across the seeds, and every seed's predictions.
    """
    first = runs[0]
    if len(runs) == 1 and len(seeds) <= 1:
        return first
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
    return Evaluated(
        results=attrs.evolve(first.results, seeds=tuple(seeds), spread=spread),
        predictions=tuple(p for run in runs for p in run.predictions),
    )


_SLICE = 1 << 22
"""Ratings per slice in whole-column passes, so temporaries stay small."""


def fit_counts(
    baseline_fit: str,
    ratings: Ratings,
    *,
    test_users: np.ndarray[Any, np.dtype[np.integer[Any]]],
    train_profiles: Sequence[np.ndarray[Any, np.dtype[np.integer[Any]]]],
    train_truths: Sequence[np.ndarray[Any, np.dtype[np.integer[Any]]]],
    cut_day: int | None = None,
) -> tuple[str, np.ndarray[Any, np.dtype[np.int64]]]:
    """
    Interactions per movie id (``np.bincount`` over the movie column, index = id) in the data the
    classic baselines are fitted on, and its source: every rating but the test users' (for
    ``baseline_fit = "ratings_without_test_users"``; with a global ``cut_day``, only those dated
    before it, as the baselines stage fits), or the training users' profile and ground-truth movies
    (``"train_pairs"``).
    """
    if baseline_fit == "train_pairs":
        fitted = interactions_from_pairs(train_profiles, train_truths)
        return str(fitted.source), np.bincount(fitted.movies.astype(np.int64))
    # every rating minus the test users' ones, counted a slice at a time (no copy of the columns,
    # which interactions_from_ratings(...).movies would make: 100M ratings are 0.6 GB of it)
    excluded = np.unique(np.asarray(test_users, dtype=np.int64))
    counts = np.zeros(0, dtype=np.int64)
    for a in range(0, len(ratings), _SLICE):
        movie = ratings.movie[a : a + _SLICE]
        keep = ~np.isin(ratings.user[a : a + _SLICE], excluded)
        if cut_day is not None:  # the global protocol fits only the ratings before its cut
            keep &= ratings.day[a : a + _SLICE] < cut_day
        kept = movie[keep]
        piece = np.bincount(kept.astype(np.int64), minlength=len(counts))
        piece[: len(counts)] += counts
        counts = piece
    last = np.flatnonzero(counts)
    return "ratings_without_test_users", counts[: int(last[-1]) + 1 if len(last) else 0]


def protocol_of(sampling: SamplingSpec, cut_day: int | None, ratings: Ratings | None = None) -> Protocol:
    """
    The variant's evaluation protocol: its ground-truth rule, whether it splits in time, and for the
    global protocol the cut (with the number of ratings on each side when ``ratings`` are given).
    """
    rule = sampling.ground_truth
    if rule != "future_global" or cut_day is None:
        return Protocol(ground_truth=rule, temporal="per_user" if rule == "future" else "none")
    before = after = None
    if ratings is not None:
        before = int(np.count_nonzero(ratings.day < cut_day))
        after = len(ratings) - before
    return Protocol(
        ground_truth=rule,
        temporal="global",
        cut_quantile=sampling.cut_quantile,
        cut_day=cut_day,
        cut_date=day_to_date(cut_day).isoformat(),
        ratings_before=before,
        ratings_after=after,
    )


def truth_popularity(
    counts: np.ndarray[Any, np.dtype[np.int64]],
    catalogue: np.ndarray[Any, np.dtype[np.integer[Any]]],
    truths: Sequence[Sequence[int] | np.ndarray[Any, np.dtype[np.integer[Any]]]],
    *,
    source: str,
) -> Popularity:
    """
    Where ground-truth movies rank by popularity in the fitting data.

    Args:
        counts: interactions per movie id (index = id; ids past the end count 0).
        catalogue: the movie ids to rank (ranks 1..len: most interactions first, ties by smaller id).
        truths: each user's ground-truth movie ids (every entry counts once).
        source: what ``counts`` was counted on.

    Raises:
        ValueError: when a ground-truth movie is not in ``catalogue``.
    """
    ids = np.asarray(catalogue, dtype=np.int64)
    size = int(max(int(ids.max()) + 1 if len(ids) else 0, len(counts)))
    padded = np.zeros(size, dtype=np.int64)
    padded[: len(counts)] = counts
    order = np.lexsort((ids, -padded[ids]))
    rank = np.zeros(size, dtype=np.int64)
    rank[ids[order]] = np.arange(1, len(ids) + 1)
    parts = [np.asarray(t, dtype=np.int64) for t in truths]
    items = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    ranks = rank[items]
    if np.any(ranks == 0):
        msg = "a ground-truth movie is not in the catalogue"
        raise ValueError(msg)
    if len(ranks) == 0:
        return Popularity(source=source, catalogue=len(ids))
    return Popularity(
        source=source,
        catalogue=len(ids),
        items=len(ranks),
        top20_share=float(np.mean(ranks <= 20)),
        top100_share=float(np.mean(ranks <= 100)),
        median_rank=float(np.median(ranks)),
    )


def _means(rows: Sequence[tuple[float, ...]], names: Sequence[str]) -> tuple[tuple[str, float], ...]:
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return tuple((n, float(values[:, j].mean()) if len(values) else math.nan) for j, n in enumerate(names))


def _resampled(
    scored: Sequence[_Scored], names: Sequence[str], spec: Spec, seed: int, variant: str
) -> dict[int, np.ndarray[Any, np.dtype[np.float64]]]:
    """
    Every scored model's bootstrap means (resamples x metrics), by its position in ``scored``: one
    draw of test users for the whole variant (``derive_seed(seed, f"{variant}/bootstrap")``), shared
    by every model and metric, so a model's interval and a paired difference's come from the same
    resamples. Models with fewer than two users have none.
    """
    tested = [k for k, e in enumerate(scored) if len(e.rows) >= 2]
    if not tested:
        return {}
    users = {len(scored[k].rows) for k in tested}
    assert len(users) == 1, "every model of a variant scores the same test users"
    m = len(names)
    table = np.hstack([np.array(scored[k].rows, dtype=np.float64).reshape(-1, m) for k in tested])
    means = bootstrap_column_means(
        table, resamples=spec.evaluation.resamples, seed=derive_seed(seed, f"{variant}/bootstrap")
    )
    return {k: means[:, j * m : (j + 1) * m] for j, k in enumerate(tested)}


def _model_scores(
    entry: _Scored,
    names: Sequence[str],
    spec: Spec,
    percentiles: np.ndarray[Any, np.dtype[np.float64]],
    catalogue_size: int,
    resampled: np.ndarray[Any, np.dtype[np.float64]] | None,
) -> ModelScores:
    """
    Means, bootstrap intervals (from the variant's shared resamples, when given), answer rates,
    matching sensitivity and coverage of one model.
    """
    evaluation = spec.evaluation
    means = _means(entry.rows, names)
    found: list[tuple[str, float, float]] = []
    if resampled is not None:
        for j, (n, mean) in enumerate(means):
            ci = percentile_interval(mean, resampled[:, j], evaluation.confidence)
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
    scored: Sequence[_Scored],
    resampled: Mapping[int, np.ndarray[Any, np.dtype[np.float64]]],
    names: Sequence[str],
    spec: Spec,
    seed: int,
    variant: str,
    tuning: BaselineTuning | None,
) -> tuple[Comparison, ...]:
    """
    Paired comparisons: fine-tuned vs zero-shot, and each LLM vs the reference classic baseline
    (``tuning.reference``, chosen on the validation users, never on these test users), each with a
    bootstrap interval (the difference of the two models' shared resampled means) and a sign-flip
    p-value (one set of sign vectors for the whole variant, ``derive_seed(seed, f"{variant}/sign-flip")``),
    Holm-adjusted within ``evaluation.holm_family``: every comparison x metric of the variant
    ("table") or each pair's metric rows ("comparison").
    """
    at = {id(e): k for k, e in enumerate(scored)}
    by_role = {e.role: e for e in scored if e.role not in ("classic", "ideal")}
    pairs = [(by_role["finetuned"], by_role["baseline"])]
    if "few_shot" in by_role:
        pairs.append((by_role["few_shot"], by_role["baseline"]))
    reference = tuning.reference if tuning is not None else None
    best = next((e for e in scored if e.role == "classic" and e.label == reference and e.rows), None)
    if best is not None:
        pairs += [(by_role[role], best) for role in ("finetuned", "few_shot", "baseline") if role in by_role]
    evaluation = spec.evaluation
    pairs = [(a, b) for a, b in pairs if len(a.rows) >= 2]
    m = len(names)
    values = [
        (np.array(a.rows, dtype=np.float64).reshape(-1, m), np.array(b.rows, dtype=np.float64).reshape(-1, m))
        for a, b in pairs
    ]
    pvalues = (
        sign_flip_pvalues(
            np.hstack([va - vb for va, vb in values]),
            permutations=evaluation.permutations,
            seed=derive_seed(seed, f"{variant}/sign-flip"),
        )
        if pairs
        else np.zeros(0)
    )
    tested: list[tuple[_Scored, _Scored, list[PairedComparison]]] = []
    for p, ((a, b), (va, vb)) in enumerate(zip(pairs, values, strict=True)):
        ra, rb = resampled[at[id(a)]], resampled[at[id(b)]]
        found = []
        for j, n in enumerate(names):
            difference = float((va[:, j] - vb[:, j]).mean())
            found.append(
                PairedComparison(
                    label=f"{variant}/{a.label}-vs-{b.label}/{n}",
                    users=len(va),
                    mean_a=float(va[:, j].mean()),
                    mean_b=float(vb[:, j].mean()),
                    difference=percentile_interval(difference, ra[:, j] - rb[:, j], evaluation.confidence),
                    p_value=float(pvalues[p * m + j]),
                )
            )
        tested.append((a, b, found))
    if evaluation.holm_family == "table":
        flat = holm([c.p_value for _, _, found in tested for c in found]).tolist()
        families = [flat[i * len(names) : (i + 1) * len(names)] for i in range(len(tested))]
    else:
        families = [holm([c.p_value for c in found]).tolist() for _, _, found in tested]
    out: list[Comparison] = []
    for (a, b, found), adjusted in zip(tested, families, strict=True):
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


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=True)
"""What ``json.dumps(record, ensure_ascii=False, allow_nan=True)`` would build for every record."""

_CHUNK = 4096
"""Predictions encoded together (a few megabytes of JSON)."""

_remembered: list[tuple[tuple[Prediction, ...], bytes]] = []
"""The last predictions encoded with ``remember=True`` and their bytes (at most one entry)."""


def encode_predictions(predictions: Sequence[Prediction], *, remember: bool = False) -> bytes:
    """
    Predictions as JSONL, one record per line with its schema version.

    With ``remember``, the bytes are kept for the next call with the same tuple (the same object),
    which takes them instead of encoding again (the stage stores the predictions, then the report
    writes the same bytes: at every eligible user, hundreds of megabytes encoded once).
    """
    if _remembered:
        known, data = _remembered[0]
        if known is predictions:
            if not remember:
                _remembered.clear()
            return data
    # encoded a chunk of records at a time: at every eligible user the file is over a gigabyte, and
    # one str of every line, their joined copy and its bytes came to four times that at once
    chunks: list[bytes] = []
    for start in range(0, len(predictions), _CHUNK):
        lines = [
            _JSON.encode({"schema_version": PREDICTIONS_SCHEMA_VERSION, **CONVERTER.unstructure(p)})
            for p in predictions[start : start + _CHUNK]
        ]
        lines.append("")
        chunks.append("\n".join(lines).encode("utf-8", "surrogatepass"))
    encoded = b"".join(chunks)
    del chunks
    _remembered.clear()
    if remember and isinstance(predictions, tuple):
        _remembered.append((predictions, encoded))
    return encoded


def decode_predictions(data: bytes, what: str = "predictions.jsonl") -> tuple[Prediction, ...]:
    """
    Predictions read back from JSONL (an unknown schema version is refused).
    """
    out = []
    # records end at "\n" only: a title may hold U+2028 or U+0085, which splitlines() would split at;
    # split as bytes (0x0A is never inside a UTF-8 sequence), each line decoded on its own
    for line in data.split(b"\n"):
        if not line:
            continue
        record = json.loads(line.decode("utf-8", "surrogatepass"))
        check_schema(record, PREDICTIONS_SCHEMA_VERSION, what)
        record.pop("schema_version")
        out.append(CONVERTER.structure(record, Prediction))
    return tuple(out)


def save(folder: StageDir, value: Evaluated) -> None:
    """
    Store the results and the predictions.
    """
    folder.write_bytes("predictions.jsonl", encode_predictions(value.predictions, remember=True))
    folder.write_json("results", value.results.to_dict())


def load(folder: StageDir) -> Evaluated:
    """
    Read stored results and predictions.
    """
    data = folder.read_json("results")
    raw = folder.read_bytes("predictions.jsonl")
    assert isinstance(data, dict)
    assert raw is not None
    check_schema(data, SCHEMA_VERSION, "results.json")
    return Evaluated(results=Results.from_dict(data), predictions=decode_predictions(raw))
