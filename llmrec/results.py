"""
Scored results: what ``results.json`` holds and what the report renders.

Everything here is metrics and counts only, deterministic for a given spec and data (no timestamps:
those go to ``manifest.json``). ``SCHEMA_VERSION`` grows when a section is added; readers ignore keys
they do not know, so later sections (funnel, cost, baselines, intervals) do not break them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = [
    "PREDICTIONS_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "STATS",
    "BaselineTuning",
    "Funnel",
    "ModelRole",
    "ModelScores",
    "Popularity",
    "Prediction",
    "PredictionItem",
    "Protocol",
    "Results",
    "TuningCandidate",
    "VariantResults",
    "metric_label",
]

SCHEMA_VERSION = 2
"""2: results.json is written by the codec (attribute names as keys)."""
PREDICTIONS_SCHEMA_VERSION = 2
"""2: one record shape for LLMs and classic baselines (``Prediction``), written by the codec."""

ModelRole = Literal["baseline", "finetuned", "few_shot", "classic", "ideal"]
"""``baseline``: the zero-shot LLM (the paper's "Baseline" column); ``finetuned``: the fine-tuned LLM;
``few_shot``: the base LLM with training examples in the prompt; ``classic``: a classic recommender
(Random, MostPopular, ItemKNN, EASE); ``ideal``: the best achievable value given the list length and
each user's number of relevant movies."""


@attrs.frozen
class PredictionItem:
    """
    One item of a scored list: what was written (LLMs), what it matched, what it was scored as.
    """

    rank: int
    title: str | None
    match: str
    """"id" for classic baselines; the title match kind for LLM answers."""
    movie_ids: tuple[int, ...]
    scored_as: int | None
    hit: bool
    text: str | None = None
    year: int | None = None
    fuzzy_score: float | None = None


@attrs.frozen
class Prediction:
    """
    One model's list for one test user of one variant and seed: one shape for LLMs and baselines.
    """

    variant: str
    seed: int
    role: str
    model: str
    user: int
    profile: tuple[int, ...]
    ground_truth: tuple[int, ...]
    items: tuple[PredictionItem, ...]
    ranked: tuple[int | None, ...]
    metrics: tuple[tuple[str, float], ...]
    profile_titles: tuple[str, ...] = ()
    ground_truth_titles: tuple[str, ...] = ()
    source: str | None = None
    """What a classic baseline was fitted on; None for LLMs."""
    raw_text: str | None = None
    """The answer exactly as the model wrote it (LLMs)."""
    answer_format: str | None = None
    parse_failure: str | None = None
    request_id: str | None = None


def metric_label(name: str) -> str:
    """
    The display label of a metric name: "precision@3" -> "Precision@3", "mrr" -> "MRR".
    """
    base, _, k = name.partition("@")
    pretty = {
        "precision": "Precision",
        "recall": "Recall",
        "f1": "F1",
        "mrr": "MRR",
        "map": "MAP",
        "ndcg": "NDCG",
        "hitrate": "HitRate",
    }.get(base, base.upper() if len(base) <= 4 else base.capitalize())
    return f"{pretty}@{k}" if k else pretty


@attrs.frozen
class ModelScores:
    """
    Mean metrics of one model (zero-shot baseline or fine-tuned) on one variant's test users.
    """

    role: ModelRole
    label: str
    model: str
    users: int
    parse_failures: int
    metrics: tuple[tuple[str, float], ...]
    intervals: tuple[tuple[str, float, float], ...] = ()
    """(metric, low, high): bootstrap confidence interval of each mean."""
    source: str | None = None
    """What a classic baseline was fitted on ("ratings_without_test_users", "train_pairs", "catalogue")."""
    grounding: tuple[tuple[str, float], ...] = ()
    """LLM answer rates: parse failures, short lists, hallucinated / repeated / in-profile / fuzzy items."""
    sensitivity: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    """Metrics under each title-matching mode ("exact", "normalized", "fuzzy") for an LLM."""
    beyond: tuple[tuple[str, float], ...] = ()
    """Catalogue coverage and mean popularity percentile of the recommended movies."""

    def interval(self, name: str) -> tuple[float, float] | None:
        """
        The confidence interval of one metric's mean, or None when not computed.
        """
        for key, low, high in self.intervals:
            if key == name:
                return (low, high)
        return None

    def metric(self, name: str) -> float:
        """
        The value of one metric.

        Raises:
            KeyError: when the metric was not computed.
        """
        for key, value in self.metrics:
            if key == name:
                return value
        raise KeyError(name)


STATS = ("min", "p25", "median", "mean", "p75", "max")


@attrs.frozen
class Funnel:
    """
    How a variant's sampled users fared: neighbours found and drawn per user, ground-truth sizes.

    ``neighbor_candidates`` and ``neighbors_drawn`` hold (statistic, value) pairs for ``STATS`` over all
    sampled users; ``ground_truth_sizes[s]`` is the number of sampled users whose ground truth has
    ``s`` movies (index 0: users dropped for an empty ground truth).
    """

    neighbor_candidates: tuple[tuple[str, float], ...]
    neighbors_drawn: tuple[tuple[str, float], ...]
    ground_truth_sizes: tuple[int, ...]

    @property
    def mean_ground_truth_size(self) -> float:
        """
        Mean ground-truth size over the users who keep one (size >= 1); NaN when none does.
        """
        kept = sum(self.ground_truth_sizes[1:])
        total = sum(size * n for size, n in enumerate(self.ground_truth_sizes))
        return total / kept if kept else math.nan


@attrs.frozen
class Popularity:
    """
    How much of a variant's ground truth is plain popularity: where the test users' ground-truth
    movies rank among the catalogue by the number of interactions in the classic baselines' fitting
    data (rank 1 = most popular; ties by smaller movie id, as MostPopular breaks them).

    Every (test user, ground-truth movie) pair counts once. High top-20 / top-100 shares and a low
    median rank mean the variant measures fame more than taste.
    """

    source: str = ""
    """The fitting data counted: "ratings_without_test_users" or "train_pairs" (evaluation.baseline_fit)."""
    catalogue: int = 0
    """Movies ranked (the whole catalogue, unrated movies last)."""
    items: int = 0
    """Ground-truth entries counted (summed over the test users)."""
    top20_share: float = math.nan
    """Share of the ground-truth entries that are among the 20 most popular movies."""
    top100_share: float = math.nan
    """Share of the ground-truth entries that are among the 100 most popular movies."""
    median_rank: float = math.nan
    """Median popularity rank of the ground-truth entries."""


@attrs.frozen
class Protocol:
    """
    The evaluation protocol of a variant's ground truth: whether it splits the ratings in time, and
    for the global temporal protocol where (see docs/sampling.md, "Which protocol leaks what").
    """

    ground_truth: str
    """The rule (``sampling.ground_truth``): "neighbors", "future", "future_global" or "knn"."""
    temporal: str
    """"none" (neighbors, knn: no split in time), "per_user" (future: each user's own cut date; other
    users' later ratings still reach eligibility and the baselines) or "global" (future_global: one cut
    date for everyone; eligibility, profiles and the baselines' fitting data before it, relevance after)."""
    cut_quantile: float | None = None
    """The quantile of all rating dates the global cut is placed at (global only)."""
    cut_day: int | None = None
    """The global cut in days since 1970-01-01 (global only)."""
    cut_date: str | None = None
    """The global cut as an ISO date: ratings dated before it are the past, on or after it the future."""
    ratings_before: int | None = None
    """All ratings (every user's) dated before the cut, when the ratings were at hand."""
    ratings_after: int | None = None
    """All ratings dated on or after the cut, when the ratings were at hand."""


@attrs.frozen
class Comparison:
    """
    Model A against model B on one metric, paired over the same test users.
    """

    a: str
    """Label of model A (e.g. "Fine-tuned")."""
    b: str
    """Label of model B (e.g. "Baseline")."""
    metric: str
    users: int
    mean_a: float
    mean_b: float
    difference: float
    """mean(A - B)."""
    low: float
    high: float
    """Percentile-bootstrap confidence interval of the difference."""
    p_value: float
    """Two-sided paired sign-flip permutation p-value."""
    p_holm: float
    """The p-value after Holm's correction within the variant's family (``VariantResults.holm_family``)."""


@attrs.frozen
class TuningCandidate:
    """
    One classic baseline at one setting, scored on the validation users (fitted without them).
    """

    label: str
    """The baseline ("EASE", "ItemKNN", "MostPopular", "Random")."""
    setting: float | int | str
    """EASE's λ, ItemKNN's neighbourhood (an integer or "all"), or "" for a baseline with nothing to set."""
    score: float
    """The mean ``BaselineTuning.metric`` over the validation users."""


@attrs.frozen
class BaselineTuning:
    """
    How the classic baselines' settings and the reference baseline (the one every LLM is compared
    with) were chosen: by a metric on the validation users, never on the test users.
    """

    metric: str
    """The validation metric (``evaluation.tune_metric``)."""
    validation_users: int
    """Validation users with a ground truth (the ones scored)."""
    tuned: bool
    """False when there were too few validation users: each grid's first value, a fixed reference."""
    fit: str
    """What the candidates were fitted on: "ratings_without_validation_and_test_users" or "train_pairs"."""
    reference: str
    """Label of the reference baseline."""
    settings: tuple[tuple[str, float | int | str], ...]
    """(label, chosen setting) for each baseline with a grid, refitted on the baselines' own fitting data."""
    candidates: tuple[TuningCandidate, ...] = ()
    """Every baseline and setting scored; empty when not tuned."""
    note: str = ""
    """Why nothing was tuned ("" when tuned)."""

    def setting(self, label: str) -> float | int | str | None:
        """
        The chosen setting of one baseline, or None when it has none.
        """
        return dict(self.settings).get(label)


@attrs.frozen
class VariantResults:
    """
    One ground-truth variant (the paper's profileData50 or profileData60): its settings, counts and scores.
    """

    name: str
    sampling: tuple[tuple[str, float | int | str], ...]
    counts: tuple[tuple[str, int], ...]
    models: tuple[ModelScores, ...]
    funnel: Funnel | None = None
    comparisons: tuple[Comparison, ...] = ()
    confidence: float | None = None
    """Level of the intervals (e.g. 0.95), when computed."""
    min_test_users: int | None = None
    """The spec's ``evaluation.min_test_users``: fewer scored test users flag the variant as too small."""
    holm_family: str | None = None
    """The family ``p_holm`` was adjusted in: "table" (all of the variant's comparisons x metrics) or
    "comparison" (each pair of models' metric rows); None in results from before the choice existed."""
    popularity: Popularity | None = None
    """How much of the test users' ground truth is among the most popular movies of the fitting data."""
    protocol: Protocol | None = None
    """The evaluation protocol (which ratings each part sees, and the global cut date); None in results
    from before it was recorded."""
    tuning: BaselineTuning | None = None
    """How the classic baselines were tuned and the reference baseline chosen (None: no classic baselines,
    or results from before the choice was made on validation users)."""
    paper_table: int | None = None
    """The spec's ``variant.paper_table``: the paper's table this variant reproduces (0: none; None: not
    set, the report matches the variant's name)."""

    @property
    def test_users(self) -> int:
        """
        Test users scored.
        """
        return int(dict(self.counts).get("test_users", 0))

    @property
    def too_small(self) -> bool:
        """
        Whether the variant has fewer test users than ``min_test_users`` (too few to mean anything).
        """
        return self.min_test_users is not None and self.test_users < self.min_test_users

    def model_scores(self, role: ModelRole) -> ModelScores:
        """
        The scores of the model with this role.

        Raises:
            KeyError: when no model has that role.
        """
        for m in self.models:
            if m.role == role:
                return m
        raise KeyError(role)


@attrs.frozen
class SeedSpread:
    """
    One model's metric across repeated runs with different seeds (``experiment.seeds``).
    """

    variant: str
    label: str
    metric: str
    values: tuple[float, ...]
    """The metric's mean over test users, one per seed, in ``Results.seeds`` order."""

    @property
    def mean(self) -> float:
        """
        Mean across seeds.
        """
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """
        Sample standard deviation across seeds (NaN with fewer than two).
        """
        n = len(self.values)
        if n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (n - 1))


@attrs.frozen
class Results:
    """
    The whole experiment's scores.
    """

    experiment: str
    title: str
    metric_names: tuple[str, ...]
    variants: tuple[VariantResults, ...]
    schema_version: int = SCHEMA_VERSION
    matching: str | None = None
    """The title-matching mode the metrics were scored with ("exact", "normalized", "fuzzy")."""
    seeds: tuple[int, ...] = ()
    """The seeds of a repeated experiment (the first is ``experiment.seed``); empty when not repeated."""
    spread: tuple[SeedSpread, ...] = ()
    """Every model's metrics across ``seeds``."""

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON shape of ``results.json``, written by llmrec's one converter (``llmrec.codec``):
        attribute names as keys, (name, value) pairs as objects.
        """
        from llmrec.codec import CONVERTER

        data: dict[str, Any] = CONVERTER.unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Results:
        """
        Read the JSON shape back.

        Raises:
            StoreError: when its ``schema_version`` is not the one this llmrec writes.
        """
        from llmrec.codec import CONVERTER, check_schema

        check_schema(data, SCHEMA_VERSION, "results.json")
        return CONVERTER.structure(dict(data), cls)
