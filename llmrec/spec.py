"""
The experiment spec: TOML text -> frozen attrs objects.

``parse_spec(text, source=..., base_dir=...)`` is the only entry point from text. It never touches the
disk: ``source`` only names the spec in messages and ``base_dir`` is joined to relative data paths.
Every problem is reported at once as a ``SpecError`` whose ``problems`` are ``SpecProblem`` values.

Field docstrings (the string under each field) are the spec reference: ``docs/spec.md`` is generated
from them by ``llmrec.spec_docs`` and a test fails when a field has none.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import math
import os
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from llmrec.errors import SpecError, SpecProblem, format_toml_value

__all__ = [
    "DEFAULT_JSON_FORMAT",
    "DEFAULT_OUTPUT_FORMAT",
    "DEFAULT_TASK",
    "DEFAULT_USER_TEMPLATE",
    "BaselineFit",
    "BaselineKind",
    "DatasetFormat",
    "DatasetSpec",
    "DateOrder",
    "EligibilityFilter",
    "EvaluationSpec",
    "ExecutionSpec",
    "ExecutorKind",
    "ExperimentSpec",
    "FakeProviderSpec",
    "FinetuneSpec",
    "GroundTruthExclusion",
    "GroundTruthRule",
    "HolmFamily",
    "InferenceSpec",
    "KnnNeighbors",
    "LocalProviderSpec",
    "LoraSpec",
    "MatchMode",
    "NeighborPool",
    "OpenAIProviderSpec",
    "OutputMode",
    "PromptSpec",
    "ProviderKind",
    "ProviderSpec",
    "ReportSpec",
    "SamplingSpec",
    "Spec",
    "SplitSpec",
    "SyntheticSpec",
    "UserCount",
    "VariantSpec",
    "parse_spec",
    "spec_hash",
]

DatasetFormat = Literal["netflix", "movielens", "synthetic"]
ProviderKind = Literal["fake", "openai", "local"]
OpenAIMode = Literal["sync", "batch"]
RequestProfile = Literal["chat", "reasoning"]
Device = Literal["auto", "cpu", "cuda"]
EligibilityFilter = Literal["before_draw", "after_draw"]
DateOrder = Literal["newest_first", "oldest_first"]
NeighborPool = Literal["all_users", "sampled_users"]
GroundTruthExclusion = Literal["rated", "profile"]
BaselineKind = Literal["random", "popular", "item_knn", "ease"]
BaselineFit = Literal["ratings_without_test_users", "train_pairs"]
KnnNeighbors = int | Literal["all"]
"""An item-kNN neighbourhood size: a count, or "all" neighbours."""
HolmFamily = Literal["table", "comparison"]
MatchMode = Literal["exact", "normalized", "fuzzy"]
OutputMode = Literal["list", "json"]
GroundTruthRule = Literal["neighbors", "future", "future_global", "knn"]
ExecutorKind = Literal["serial", "process", "ray"]
UserCount = int | Literal["all"]
"""How many users to sample: a number, or "all" the eligible ones."""

Check = tuple[Callable[[Any], bool], str]
_CHECK = "llmrec_check"


def _positive_int() -> Check:
    return (lambda v: v > 0, "an integer > 0")


def _at_least(n: int) -> Check:
    return (lambda v: v >= n, f"an integer >= {n}")


def _share() -> Check:
    return (lambda v: 0.0 < v <= 1.0 and math.isfinite(v), "a number in (0, 1]")


def _stars() -> Check:
    return (lambda v: 1 <= v <= 5, "an integer from 1 to 5")


def _field(default: Any, check: Check | None = None) -> Any:
    """
    An attrs field with an optional (predicate, expected) check kept in its metadata.

    The same check serves both ways in: ``__attrs_post_init__`` for objects built in Python and the
    raw-dict pass of ``parse_spec`` that reports range problems beside type problems.
    """
    metadata = {_CHECK: check} if check is not None else {}
    if isinstance(default, list | tuple) or attrs.has(type(default)):
        return attrs.field(factory=lambda: default, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def _run_checks(obj: Any) -> None:
    """
    Check an object built in Python: field types, field ranges, then the class's cross-field checks.
    """
    cls = type(obj)
    values = {f.name: getattr(obj, f.name) for f in attrs.fields(cls)}
    problems = _type_problems(cls, values) + _field_problems(cls, values, "")
    problems += _cross_problems(cls, values, "")
    if problems:
        raise SpecError(cls.__name__, tuple(problems))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_problems(cls: type, values: Mapping[str, Any]) -> list[SpecProblem]:
    hints = _hints(cls)
    return [
        SpecProblem(name, _expected_type(hints[name]), value, has_value=True)
        for name, value in values.items()
        if not _has_type(value, hints[name], arrays=tuple)
    ]


def _field_problems(cls: type, raw: Mapping[str, Any], prefix: str) -> list[SpecProblem]:
    out: list[SpecProblem] = []
    hints = _hints(cls)
    for f in attrs.fields(cls):
        check = f.metadata.get(_CHECK)
        if check is None or f.name not in raw:
            continue
        value = raw[f.name]
        if value is None or not _has_type(value, hints[f.name]):
            continue
        predicate, expected = check
        path = _join(prefix, f.name)
        if not isinstance(value, list | tuple):
            if not predicate(value):
                out.append(SpecProblem(path, expected, value, has_value=True))
        elif not value:
            out.append(SpecProblem(path, "a non-empty array", value, has_value=True))
        else:
            out += [
                SpecProblem(f"{path}[{i}]", expected, v, has_value=True)
                for i, v in enumerate(value)
                if not predicate(v)
            ]
    return out


def _cross_problems(cls: type, values: Mapping[str, Any], prefix: str) -> list[SpecProblem]:
    """
    Run the class's cross-field checks whose fields are all in ``values``.

    Each check is a function whose parameter names are the fields it reads, so the raw pass of
    ``parse_spec`` can still run it when some other field of the class failed to parse.
    """
    out: list[SpecProblem] = []
    for check in getattr(cls, "_checks", ()):
        names = list(inspect.signature(check).parameters)
        if all(n in values for n in names):
            problems = check(**{n: values[n] for n in names})
            out += [attrs.evolve(p, path=_join(prefix, p.path)) for p in problems]
    return out


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    if not name:
        return prefix
    return f"{prefix}.{name}"


def _has_type(value: Any, hint: Any, *, arrays: type | tuple[type, ...] = (list, tuple)) -> bool:
    """
    Whether a value already has the field's type (so range checks can run on it).

    Raw TOML arrays are lists; objects built in Python must hold tuples (``arrays=tuple``).
    """
    origin = typing.get_origin(hint)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(value == c and type(value) is type(c) for c in get_args(hint))
    if origin is tuple:
        inner = get_args(hint)[0]
        items = typing.cast("Sequence[Any]", value)
        return isinstance(value, arrays) and all(_has_type(v, inner, arrays=arrays) for v in items)
    if origin in (typing.Union, _UnionType):
        return any(_has_type(value, a, arrays=arrays) for a in get_args(hint))
    if attrs.has(hint):
        return isinstance(value, hint)
    return False


def _expected_type(hint: Any) -> str:
    """
    What a value of this type looks like, for a type problem found in an object built in Python.
    """
    simple = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if hint in simple:
        return simple[hint]
    origin = typing.get_origin(hint)
    if origin is Literal:
        return _one_of(get_args(hint))
    if origin is tuple:
        return "a tuple"
    if origin in (typing.Union, _UnionType):
        args = get_args(hint)
        named = " or ".join(_expected_type(a) for a in args if a is not type(None))
        return named + " or None" if type(None) in args else named
    return f"a {getattr(hint, '__name__', hint)}"


def _one_of(choices: Sequence[object]) -> str:
    if len(choices) == 1:  # int | Literal["all"] reads 'an integer or "all"'
        return f'"{choices[0]}"'
    return "one of " + ", ".join(f'"{c}"' for c in choices)


_UnionType = type(int | None)

DEFAULT_TASK = (
    "You are a movie recommendation system. Given the ten movies a user liked most, recommend "
    "{n} other movies the user is likely to watch next, most likely first."
)
DEFAULT_OUTPUT_FORMAT = (
    "Answer with exactly {n} movies as a numbered list, one per line, in the form "
    '"1. Title (Year)", and nothing else. Do not repeat the movies the user liked.'
)
DEFAULT_JSON_FORMAT = (
    'Answer with a JSON object {"movies": [...]} holding exactly {n} movies as strings of the form '
    '"Title (Year)", most likely first, and nothing else. Do not repeat the movies the user liked.'
)
DEFAULT_USER_TEMPLATE = "The movies I liked most:\n{profile}\n\nRecommend {n} movies."


# Cross-field checks. Each reads the fields named by its parameters and returns problems with paths
# relative to its class; a class lists its checks in ``_checks``.

CrossCheck = Callable[..., list[SpecProblem]]


def _path_given(format: str, path: str | None) -> list[SpecProblem]:
    if format != "synthetic" and path is None:
        return [SpecProblem("path", f'expected a folder path when format = "{format}"')]
    return []


def _shares_sum_to_one(train: float, validation: float, test: float) -> list[SpecProblem]:
    total = train + validation + test
    if abs(total - 1.0) > 1e-6:
        return [SpecProblem("", f"expected train + validation + test to sum to 1 (they sum to {total:.6g})")]
    return []


def _seeds_not_negative(seeds: tuple[int, ...]) -> list[SpecProblem]:
    return [
        SpecProblem(f"seeds[{i}]", "an integer >= 0", value, has_value=True)
        for i, value in enumerate(seeds)
        if value < 0
    ]


def _tune_metric_reported(k: tuple[int, ...], extended_metrics: bool, tune_metric: str) -> list[SpecProblem]:
    from llmrec.metrics import metric_names

    names = metric_names(k, extended=extended_metrics)
    if tune_metric not in names:
        return [SpecProblem("tune_metric", _one_of(names), tune_metric, True)]
    return []


def _grids_distinct(
    ease_lambdas: tuple[float, ...], item_knn_neighbors: tuple[KnnNeighbors, ...]
) -> list[SpecProblem]:
    out: list[SpecProblem] = []
    for name, grid in (("ease_lambdas", ease_lambdas), ("item_knn_neighbors", item_knn_neighbors)):
        if len(set(grid)) != len(grid):
            out.append(SpecProblem(name, "distinct values", list(grid), True))
    return out


def _variants_given(variant: tuple[VariantSpec, ...]) -> list[SpecProblem]:
    return [] if variant else [SpecProblem("variant", "expected at least one [[variant]] table")]


def _variant_names_unique(variant: tuple[VariantSpec, ...]) -> list[SpecProblem]:
    out: list[SpecProblem] = []
    seen: set[str] = set()
    for i, v in enumerate(variant):
        if v.name in seen:
            out.append(SpecProblem(f"variant[{i}].name", "a name not used by another variant", v.name, True))
        seen.add(v.name)
    return out


def _one_shared_model(variant: tuple[VariantSpec, ...], finetune: FinetuneSpec) -> list[SpecProblem]:
    if finetune.model is not None and len(variant) > 1:
        expected = (
            "no shared model id when there are several variants (set model in each [[variant]] instead)"
        )
        return [SpecProblem("finetune.model", expected, finetune.model, True)]
    return []


def _global_cut_fits_before_it(
    sampling: SamplingSpec, variant: tuple[VariantSpec, ...], evaluation: EvaluationSpec
) -> list[SpecProblem]:
    # "train_pairs" fits on the training users' ground truth, which under "future_global" is dated
    # after the cut: the baselines would see the future that the protocol keeps from them
    if not evaluation.baselines or evaluation.baseline_fit != "train_pairs":
        return []
    names = [v.name for v in variant if v.apply(sampling).ground_truth == "future_global"]
    if not names:
        return []
    expected = (
        'baseline_fit = "ratings_without_test_users" when a variant uses ground_truth = "future_global" '
        f"({', '.join(names)}): the training users' pairs hold ratings dated after the cut"
    )
    return [SpecProblem("evaluation.baseline_fit", expected, evaluation.baseline_fit, True)]


def _kind_specific(finetune: FinetuneSpec, provider: ProviderSpec) -> list[SpecProblem]:
    kind = provider.kind
    out: list[SpecProblem] = []
    if kind == "local" and finetune.learning_rate_multiplier is not None:
        out.append(
            SpecProblem(
                "finetune.learning_rate_multiplier",
                'no learning_rate_multiplier with provider.kind = "local" (it is OpenAI-only; '
                "set finetune.learning_rate instead)",
                finetune.learning_rate_multiplier,
                True,
            )
        )
    if kind == "openai" and finetune.learning_rate is not None:
        out.append(
            SpecProblem(
                "finetune.learning_rate",
                'no learning_rate with provider.kind = "openai" (OpenAI takes '
                "finetune.learning_rate_multiplier)",
                finetune.learning_rate,
                True,
            )
        )
    if kind == "openai" and finetune.lora is not None:
        out.append(
            SpecProblem(
                "finetune.lora",
                'expected no [finetune.lora] table with provider.kind = "openai" (LoRA is local-only)',
            )
        )
    return out


@attrs.frozen
class ExperimentSpec:
    """
    Names the experiment and seeds every random choice in it.
    """

    name: str = _field(
        "experiment", (lambda v: v.strip() != "" and "/" not in v, "a non-empty name without '/'")
    )
    """Name of the experiment; run state goes to runs/<name>/ and the report to reports/<name>/."""

    seed: int = _field(0, _at_least(0))
    """Seed of every random choice (user sample, neighbour draws, splits, synthetic data, fake models)."""

    seeds: tuple[int, ...] = ()
    """Repeat the sampling (users, neighbours, splits), fine-tuning and scoring with each of these seeds too and report mean and spread across them; the tables and predictions stay those of `seed`; the dataset is the same for all."""

    _checks: ClassVar[tuple[CrossCheck, ...]] = (_seeds_not_negative,)

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class SyntheticSpec:
    """
    Sizes of the synthetic Netflix-format dataset (used when ``dataset.format = "synthetic"``).
    """

    users: int = _field(3000, _positive_int())
    """Number of synthetic users."""

    movies: int = _field(400, _at_least(20))
    """Number of synthetic movies (made-up titles)."""

    mean_ratings: int = _field(60, _at_least(10))
    """Mean number of ratings per user (activity is heavy-tailed around it)."""

    tastes: int = _field(8, _positive_int())
    """Number of latent taste groups; users in a group like the same movies (the collaborative signal)."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class DatasetSpec:
    """
    Where the ratings come from.
    """

    format: DatasetFormat = "synthetic"
    """Data format: "netflix" reads combined_data_*.txt and movie_titles.csv from `path`; "movielens" reads ml-100k (u.data, u.item), ml-1m (ratings.dat, movies.dat) or ml-latest-small / ml-25m / ml-32m (ratings.csv, movies.csv) from `path`; "synthetic" generates Netflix-format data in memory from `synthetic` and the experiment seed."""

    path: str | None = None
    """Folder holding the dataset files, relative to the spec file (required for "netflix")."""

    synthetic: SyntheticSpec = _field(SyntheticSpec())
    """Sizes of the synthetic dataset (see [dataset.synthetic])."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)

    _checks: ClassVar[tuple[CrossCheck, ...]] = (_path_given,)


@attrs.frozen
class SamplingSpec:
    """
    How users, profiles, neighbours and ground truth are drawn (the paper's Section 3).
    """

    users: UserCount = _field(10000, (lambda v: v == "all" or v > 0, 'an integer > 0 or "all"'))
    """Number of users sampled uniformly from the eligible ones ("we randomly sampled 10,000 users"); all of them if fewer are eligible, or "all" for every eligible user (no draw)."""

    min_five_star_ratings: int = _field(4, _at_least(0))
    """A user is eligible with at least this many 5-star ratings ("filtering for users having more than three 5-star reviews")."""

    eligibility_filter: EligibilityFilter = "before_draw"
    """"before_draw": users are drawn among the eligible ones, so `users` of them are kept when enough exist; "after_draw": `users` are drawn among all users, then the ineligible are dropped (the paper's order of sentences allows both)."""

    profile_size: int = _field(10, _positive_int())
    """Profile length: the user's top movies by stars, then rating date (see profile_date_order), then movie id ("we sampled the top 10 movies of users")."""

    profile_date_order: DateOrder = "newest_first"
    """Among movies with the same stars, "newest_first" prefers the most recently rated, "oldest_first" the earliest ("we further sorted movie ratings (from 1 to 5) along with the timestamp of the rating")."""

    neighbor_min_stars: int = _field(5, _stars())
    """A neighbour gave at least this many stars to a profile movie ("a user who has given a 5-star rating to the kth customer's top 10 movies")."""

    neighbor_min_shared: int = _field(1, _positive_int())
    """A neighbour rated at least this many profile movies with at least neighbor_min_stars."""

    neighbors: int = _field(10000, _positive_int())
    """Neighbours drawn uniformly without replacement per user, all of them if fewer ("we randomly sampled 10,000 neighbors"). Set neighbor_min_shared = profile_size for the stricter reading "5 stars to all 10 profile movies"."""

    neighbor_pool: NeighborPool = "all_users"
    """Where neighbours come from: "all_users" of the dataset, or only the "sampled_users"."""

    watch_factor: float = _field(0.5, _share())
    """Ground truth keeps movies watched by at least this share of the drawn neighbours ("watched by at least 50% of the neighbors")."""

    watched_min_stars: int = _field(1, _stars())
    """A neighbour "watched" a movie when they rated it with at least this many stars (1: any rating counts)."""

    ground_truth_excludes: GroundTruthExclusion = "rated"
    """Movies never in a user's ground truth: every movie the user "rated", or only the "profile" movies."""

    max_ground_truth: int = _field(10, _positive_int())
    """At most this many ground-truth movies per user, ranked by share then movie id ("the maximum number of suggested movies is 10")."""

    ground_truth: GroundTruthRule = "neighbors"
    """How the ground truth is made: "neighbors" (the paper's rule above), "future" (the user's own later ratings: a per-user temporal hold-out), "future_global" (one cut date for everyone: eligibility, profiles and the baselines' fitting data before it, relevance after it) or "knn" (movies of the most cosine-similar users); see docs/sampling.md."""

    future_share: float = _field(0.2, (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    """For "future": the share of each user's latest ratings held out (at least one; every rating on the cut date is held out too)."""

    future_min_stars: int = _field(4, _stars())
    """For "future" and "future_global": held-out (after-cut) ratings with at least this many stars are relevant."""

    cut_quantile: float = _field(0.8, (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    """For "future_global": the cut date is the date at this quantile of all rating dates; ratings dated before it are the past (eligibility, profiles, the baselines' fitting data), ratings on or after it the future (relevance)."""

    knn_neighbors: int = _field(50, _positive_int())
    """For "knn": how many most similar users vote for the ground truth."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class VariantSpec:
    """
    One ground-truth variant (a `[[variant]]` table): a name and overrides of the neighbour fields of [sampling].
    """

    name: str = _field("variant", (lambda v: v.strip() != "", "a non-empty name"))
    """Name shown in the report (the paper's "profileData50", "profileData60")."""

    neighbor_min_stars: int | None = _field(None, _stars())
    """Overrides sampling.neighbor_min_stars for this variant."""

    neighbor_min_shared: int | None = _field(None, _positive_int())
    """Overrides sampling.neighbor_min_shared for this variant."""

    neighbors: int | None = _field(None, _positive_int())
    """Overrides sampling.neighbors for this variant."""

    watch_factor: float | None = _field(None, _share())
    """Overrides sampling.watch_factor for this variant."""

    max_ground_truth: int | None = _field(None, _positive_int())
    """Overrides sampling.max_ground_truth for this variant."""

    ground_truth_excludes: GroundTruthExclusion | None = None
    """Overrides sampling.ground_truth_excludes for this variant (the paper's "rated" and "profile" readings side by side, as in specs/paper-readings.toml)."""

    ground_truth: GroundTruthRule | None = None
    """Overrides sampling.ground_truth for this variant (e.g. one "neighbors" and one "future" variant side by side)."""

    future_share: float | None = _field(None, (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    """Overrides sampling.future_share for this variant."""

    future_min_stars: int | None = _field(None, _stars())
    """Overrides sampling.future_min_stars for this variant."""

    cut_quantile: float | None = _field(None, (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    """Overrides sampling.cut_quantile for this variant (its cut; the sample's users are drawn on [sampling]'s)."""

    knn_neighbors: int | None = _field(None, _positive_int())
    """Overrides sampling.knn_neighbors for this variant."""

    model: str | None = None
    """An already fine-tuned model id for this variant; skips fine-tuning it."""

    paper_table: int | None = _field(None, (lambda v: v in (0, 2, 3), "2, 3 or 0"))
    """The paper's table this variant reproduces: the report puts its published values beside ours (2: Table 2, profileData50; 3: Table 3, profileData60; 0: none); not set: a variant named profileData50 or profileData60 gets its table."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)

    def apply(self, sampling: SamplingSpec) -> SamplingSpec:
        """
        The sampling spec with this variant's overrides applied.
        """
        changes = {
            f.name: getattr(self, f.name)
            for f in attrs.fields(VariantSpec)
            if f.name not in ("name", "model", "paper_table") and getattr(self, f.name) is not None
        }
        return attrs.evolve(sampling, **changes)


def _paper_variants() -> tuple[VariantSpec, ...]:
    return (
        VariantSpec(name="profileData50", watch_factor=0.5, neighbor_min_stars=5),
        VariantSpec(name="profileData60", watch_factor=0.6, neighbor_min_stars=4),
    )


@attrs.frozen
class SplitSpec:
    """
    Shares of sampled users in each split; a user's split is fixed by a hash of (seed, user id).
    """

    train: float = _field(0.7, (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    """Share of users whose examples train the fine-tune ("a 70/20/10% split")."""

    validation: float = _field(0.2, (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"))
    """Share of users whose examples are the fine-tune's validation file (never scored)."""

    test: float = _field(0.1, (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    """Share of users scored in the report."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)

    _checks: ClassVar[tuple[CrossCheck, ...]] = (_shares_sum_to_one,)


def _has_placeholder(name: str) -> Check:
    return (lambda v: "{" + name + "}" in v, f"a text containing {{{name}}}")


@attrs.frozen
class PromptSpec:
    """
    The prompt: system text = task T + output format F; user text = content C (the paper's Figure 1).
    """

    task: str = DEFAULT_TASK
    """Task description T (system text, first part); {n} becomes n_recommendations."""

    output_mode: OutputMode = "list"
    """How answers are written: "list" (numbered "Title (Year)" lines) or "json" (a {"movies": [...]} object; providers that support structured outputs are asked for that schema). Fine-tune answers use the same mode."""

    output_format: str | None = None
    """Preferred output format F (system text, second part); {n} becomes n_recommendations. Unset: a default text asking for output_mode's format."""

    user_template: str = _field(DEFAULT_USER_TEMPLATE, _has_placeholder("profile"))
    """Prompt content C; {profile} becomes the numbered "Title (Year)" lines of the profile (no ratings), {n} becomes n_recommendations."""

    n_recommendations: int = _field(10, _positive_int())
    """Movies asked for; the model's list is cut at this length before scoring."""

    few_shot: int = _field(0, _at_least(0))
    """When > 0, a third LLM column: the base model with this many training users' (profile -> ground truth) examples in the prompt, the same examples for every test user."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)

    @property
    def format_text(self) -> str:
        """
        The output format F as configured, or the default for ``output_mode``.
        """
        if self.output_format is not None:
            return self.output_format
        return DEFAULT_JSON_FORMAT if self.output_mode == "json" else DEFAULT_OUTPUT_FORMAT


@attrs.frozen
class LoraSpec:
    """
    LoRA adapter settings for local fine-tuning (``provider.kind = "local"``).
    """

    rank: int = _field(16, _positive_int())
    """LoRA rank r (vLLM serves it with --max-lora-rank at least this)."""

    alpha: int = _field(32, _positive_int())
    """LoRA alpha (the update is scaled by alpha / rank)."""

    dropout: float = _field(0.05, (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"))
    """Dropout on the LoRA layers."""

    target_modules: tuple[str, ...] = ("all-linear",)
    """Modules that get adapters: names such as "q_proj", or ["all-linear"] for every linear layer but the output head."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class FinetuneSpec:
    """
    Fine-tuning settings (the paper's Table 1), shared by every backend; kind-specific ones are checked against provider.kind.
    """

    base_model: str = "gpt-4o-mini-2024-07-18"
    """Model fine-tuned, and used zero-shot as the Baseline column (an OpenAI model id, or a Hugging Face id or local folder for provider.kind = "local")."""

    batch_size: int = _field(32, _positive_int())
    """Fine-tune batch size (Table 1: 32); local training reaches it by gradient accumulation."""

    epochs: int = _field(2, _positive_int())
    """Fine-tune epochs (Table 1: 2)."""

    learning_rate_multiplier: float | None = _field(
        None, (lambda v: v > 0 and math.isfinite(v), "a number > 0")
    )
    """OpenAI only: learning-rate multiplier; unset: 1, as in Table 1."""

    learning_rate: float | None = _field(None, (lambda v: v > 0 and math.isfinite(v), "a number > 0"))
    """Local only: the learning rate of LoRA training (unset: 2e-4)."""

    lora: LoraSpec | None = None
    """Local only: LoRA settings ([finetune.lora]; unset: the defaults below)."""

    seed: int | None = _field(None, _at_least(0))
    """Seed sent with the fine-tune job; defaults to experiment.seed."""

    model: str | None = None
    """An already fine-tuned model id; skips fine-tuning (only with a single variant; else set [[variant]] model). With OpenAI: an "ft:..." id; with a compatible server: a served adapter name."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class FakeProviderSpec:
    """
    The offline fake provider ([provider.fake]).
    """

    min_z: float = _field(4.0, (lambda v: v > 0 and math.isfinite(v), "a number > 0"))
    """How far above chance (standard deviations) a co-occurrence must be for the fake fine-tune to learn it."""

    min_count: int = _field(3, _positive_int())
    """How many training examples must show a title pair before the fake fine-tune can learn it."""

    mode: OpenAIMode = "sync"
    """"sync": answers one request at a time; "batch": through the fake's batch capability (as OpenAI's Batch API)."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class OpenAIProviderSpec:
    """
    The OpenAI API or any OpenAI-compatible server ([provider.openai]); the key comes from OPENAI_API_KEY only.
    """

    base_url: str | None = None
    """API base URL (e.g. "http://localhost:8000/v1" for vLLM); unset: OPENAI_BASE_URL, else OpenAI's."""

    mode: OpenAIMode = "sync"
    """"sync": one chat request per answer; "batch": the Batch API (half price, within 24 h)."""

    concurrency: int = _field(8, _positive_int())
    """Chat requests in flight at once."""

    max_retries: int = _field(6, _at_least(0))
    """Retries of a request that failed with 408/409/429/5xx, a timeout or a malformed body."""

    timeout_s: float = _field(120.0, (lambda v: v > 0 and math.isfinite(v), "a number > 0"))
    """Seconds before one HTTP request times out (then it is retried)."""

    requests_per_minute: int | None = _field(None, _positive_int())
    """Client-side cap on requests per minute (the server's x-ratelimit-* headers also hold requests back)."""

    tokens_per_minute: int | None = _field(None, _positive_int())
    """Client-side cap on tokens per minute."""

    budget_usd: float | None = _field(None, (lambda v: v > 0 and math.isfinite(v), "a number > 0"))
    """Refuse a run whose estimate exceeds this many dollars, and stop before spending more."""

    request_profile: RequestProfile = "chat"
    """"chat": temperature and seed; "reasoning": reasoning_effort and no temperature (reasoning models)."""

    reasoning_effort: str | None = None
    """Sent with the "reasoning" profile ("low", "medium", "high")."""

    poll_interval_s: float = _field(30.0, (lambda v: v > 0 and math.isfinite(v), "a number > 0"))
    """Seconds between polls of a fine-tune job or a batch; from the fourth poll of a loop on, the wait grows 1.5x per poll, up to 10x."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class LocalProviderSpec:
    """
    Open-weight models trained with TRL + PEFT LoRA and run with transformers ([provider.local]; needs llmrec[local]).
    """

    device: Device = "auto"
    """"auto": CUDA when available, else CPU (bf16 on a GPU, float32 on CPU)."""

    micro_batch_size: int | None = _field(None, _positive_int())
    """Examples per device step; batch_size is reached by gradient accumulation (unset: the largest divisor of batch_size up to 8)."""

    generation_batch_size: int = _field(8, _positive_int())
    """Test users per batched generation."""

    max_seq_length: int | None = _field(None, _positive_int())
    """Longest training sequence in tokens; unset: derived from the data (examples that would be cut are counted and refused)."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class ProviderSpec:
    """
    Which provider runs fine-tuning and inference, with a settings table per kind.
    """

    kind: ProviderKind = "fake"
    """"fake": deterministic offline provider shipped with llmrec; "openai": the OpenAI API or a compatible server (key from OPENAI_API_KEY); "local": open-weight models with TRL + PEFT (llmrec[local])."""

    fake: FakeProviderSpec = _field(FakeProviderSpec())
    """Fake provider settings ([provider.fake])."""

    openai: OpenAIProviderSpec = _field(OpenAIProviderSpec())
    """OpenAI settings ([provider.openai])."""

    local: LocalProviderSpec = _field(LocalProviderSpec())
    """Local model settings ([provider.local])."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)

    @property
    def settings(self) -> FakeProviderSpec | OpenAIProviderSpec | LocalProviderSpec:
        """
        The settings table of the chosen kind.
        """
        if self.kind == "openai":
            return self.openai
        return self.local if self.kind == "local" else self.fake


@attrs.frozen
class InferenceSpec:
    """
    Chat-completion settings for scoring.
    """

    temperature: float = _field(0.0, (lambda v: 0.0 <= v <= 2.0, "a number from 0 to 2"))
    """Sampling temperature."""

    seed: int | None = _field(None, _at_least(0))
    """Seed sent with each request; defaults to experiment.seed."""

    max_completion_tokens: int = _field(512, _positive_int())
    """Upper bound on tokens per answer (sent as max_completion_tokens; also the worst case a budget reserves per request)."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class EvaluationSpec:
    """
    What is scored.
    """

    k: tuple[int, ...] = _field((3, 5), _positive_int())
    """Cut-offs for Precision/Recall/F1@K (the paper: 3 and 5); MRR and MAP use the whole list."""

    extended_metrics: bool = True
    """Add NDCG@K and HitRate@K rows after the paper's eight (see docs/metrics.md)."""

    matching: MatchMode = "normalized"
    """How answer titles are matched to the catalogue for scoring: "exact", "normalized" (case, accents, punctuation, articles, a trailing year) or "fuzzy" (also rapidfuzz matches at or above fuzzy_threshold). The other modes are reported beside it as a sensitivity table."""

    fuzzy_threshold: float = _field(90.0, (lambda v: 0.0 < v <= 100.0, "a number in (0, 100]"))
    """Least rapidfuzz token-sort ratio (0-100) for a fuzzy title match."""

    baselines: tuple[BaselineKind, ...] = ("random", "popular", "item_knn", "ease")
    """Classic recommenders scored beside the LLMs on the same test users and ground truth ([] for none); see docs/baselines.md."""

    baseline_fit: BaselineFit = "ratings_without_test_users"
    """What the classic baselines are fitted on: the rating matrix with every test user's ratings removed, or the training users' (profile -> ground truth) "train_pairs". Never the full matrix, which could re-derive the ground truth."""

    baseline_items: int = _field(2000, _positive_int())
    """ItemKNN and EASE keep only this many most-rated movies (EASE inverts an items x items matrix)."""

    ease_lambdas: tuple[float, ...] = _field(
        (500.0, 50.0, 100.0, 200.0, 1000.0, 2000.0), (lambda v: v > 0 and math.isfinite(v), "a number > 0")
    )
    """EASE's ridge penalties λ to choose from by tune_metric on the validation users (fits without the validation and test users); the first is the default, used when there are too few validation users (tune_min_users) and preferred in a tie. One value fixes λ. See docs/baselines.md."""

    item_knn_neighbors: tuple[KnnNeighbors, ...] = _field(
        ("all", 10, 20, 50, 100), (lambda v: v == "all" or v > 0, 'an integer > 0 or "all"')
    )
    """ItemKNN's neighbourhood sizes to choose from like ease_lambdas ("all": every neighbour); the first is the default."""

    tune_metric: str = "map"
    """The metric, among those the evaluation reports (k, extended_metrics), that picks each classic baseline's setting and the reference baseline the LLMs are compared with, on the validation users."""

    tune_min_users: int = _field(30, _positive_int())
    """Fewer validation users with a ground truth than this: nothing is tuned (each grid's first value; the reference baseline is the first of EASE, ItemKNN, MostPopular, Random in baselines) and the report says so."""

    resamples: int = _field(10000, _positive_int())
    """Bootstrap resamples for the 95 % confidence intervals of means and paired differences."""

    permutations: int = _field(10000, _positive_int())
    """Sign-flip permutations for the paired p-values (Holm-adjusted within holm_family)."""

    holm_family: HolmFamily = "table"
    """The family Holm's correction controls: "table" (every comparison x metric of a variant together) or "comparison" (each pair of models' metric rows on their own, less strict); see docs/statistics.md."""

    confidence: float = _field(0.95, (lambda v: 0.0 < v < 1.0, "a number in (0, 1)"))
    """Confidence level of the bootstrap intervals."""

    min_test_users: int = _field(30, _positive_int())
    """A variant with fewer scored test users is flagged as too small to mean anything; a paid run refuses to start with one unless --allow-small is given."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)

    _checks: ClassVar[tuple[CrossCheck, ...]] = (_tune_metric_reported, _grids_distinct)


@attrs.frozen
class ReportSpec:
    """
    The published report.
    """

    title: str = "LLMs as movie recommenders"
    """Title of the HTML report."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class ExecutionSpec:
    """
    Where the parallel stages (ground truth, baseline scoring) run. Results never depend on it, so no stage key reads it: changing it reruns nothing.
    """

    executor: ExecutorKind = "process"
    """"serial" (this process), "process" (forked workers on this machine) or "ray" (a Ray cluster; needs llmrec[ray], docs/scaling.md); llmrec run --executor overrides it."""

    workers: int | None = _field(None, _positive_int())
    """Worker processes for "process", CPUs of a new local Ray instance for "ray"; default: both cores for datasets over 100 MB (else 1), every core for Ray; llmrec run --workers overrides it."""

    ray_address: str | None = None
    """The Ray cluster to join ("auto", "host:6379", "ray://host:10001"); RAY_ADDRESS in the environment wins over it; unset: a new local instance."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)


@attrs.frozen
class Spec:
    """
    A whole experiment.
    """

    experiment: ExperimentSpec = _field(ExperimentSpec())
    """Name and seed ([experiment])."""

    dataset: DatasetSpec = _field(DatasetSpec())
    """Data source ([dataset])."""

    sampling: SamplingSpec = _field(SamplingSpec())
    """User, profile, neighbour and ground-truth sampling ([sampling])."""

    variant: tuple[VariantSpec, ...] = _field(_paper_variants())
    """Ground-truth variants ([[variant]] tables); default: profileData50 and profileData60."""

    split: SplitSpec = _field(SplitSpec())
    """Train/validation/test shares ([split])."""

    prompt: PromptSpec = _field(PromptSpec())
    """Prompt texts ([prompt])."""

    finetune: FinetuneSpec = _field(FinetuneSpec())
    """Fine-tuning settings ([finetune])."""

    provider: ProviderSpec = _field(ProviderSpec())
    """Provider ([provider])."""

    inference: InferenceSpec = _field(InferenceSpec())
    """Inference settings ([inference])."""

    evaluation: EvaluationSpec = _field(EvaluationSpec())
    """Metrics ([evaluation])."""

    report: ReportSpec = _field(ReportSpec())
    """Report settings ([report])."""

    execution: ExecutionSpec = _field(ExecutionSpec())
    """Where the parallel stages run ([execution]); read by no stage key."""

    def __attrs_post_init__(self) -> None:
        _run_checks(self)

    _checks: ClassVar[tuple[CrossCheck, ...]] = (
        _variants_given,
        _variant_names_unique,
        _one_shared_model,
        _kind_specific,
        _global_cut_fits_before_it,
    )

    def variant_sampling(self, variant: VariantSpec) -> SamplingSpec:
        """
        The effective sampling spec of one variant.
        """
        return variant.apply(self.sampling)

    @property
    def inference_seed(self) -> int:
        """
        The seed sent with inference requests.
        """
        return self.experiment.seed if self.inference.seed is None else self.inference.seed


# ---------------------------------------------------------------------------------------------------------
# Parsing


def _strict(kind: type, expected: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if kind is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif isinstance(value, kind):
            return value
        raise _TypeProblem(value, expected)

    return hook


class _TypeProblem(ValueError):
    def __init__(self, value: Any, expected: str) -> None:
        super().__init__(expected)
        self.value = value
        self.expected = expected


def _is_literal(hint: Any) -> bool:
    return typing.get_origin(hint) is Literal


def _is_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple


def make_converter() -> cattrs.Converter:
    """
    The one converter for specs: unknown keys are errors, scalars are never coerced.

    The default hooks coerce (``3.7`` -> 3, ``true`` -> 1, ``5`` -> "5"); these do not, except that a
    TOML integer is accepted where a float is expected.
    """
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(float, _strict(float, "a number"))
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(bool, _strict(bool, "true or false"))

    def literal_hook(value: Any, hint: Any) -> Any:
        choices = get_args(hint)
        if value in choices and type(value) is type(choices[0]):
            return value
        raise _TypeProblem(value, _one_of(choices))

    conv.register_structure_hook_func(_is_literal, literal_hook)

    def user_count_hook(value: Any, _: Any) -> Any:
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise _TypeProblem(value, 'an integer or "all"')

    conv.register_structure_hook(UserCount, user_count_hook)

    def neighbors_hook(value: Any, _: Any) -> Any:
        if (isinstance(value, int) and not isinstance(value, bool)) or value == "all":
            return value
        raise _TypeProblem(value, 'an integer or "all"')

    conv.register_structure_hook_func(lambda hint: hint == KnnNeighbors, neighbors_hook)

    def tuple_hook(value: Any, hint: Any) -> Any:
        if not isinstance(value, list):
            raise _TypeProblem(value, "an array")
        (inner,) = [a for a in get_args(hint) if a is not Ellipsis]
        errors: list[Exception] = []
        out = []
        for i, v in enumerate(value):
            try:
                out.append(conv.structure(v, inner))
            except Exception as exc:  # collected and re-raised as a group with the index
                exc.__notes__ = [*getattr(exc, "__notes__", []), f"@index {i}"]
                errors.append(exc)
        if errors:
            msg = "While structuring a tuple"
            raise IterableValidationError(msg, errors, hint)
        return tuple(out)

    conv.register_structure_hook_func(_is_tuple, tuple_hook)

    def table_guard(cls: type) -> Callable[[Any, Any], Any]:
        base: Callable[[Any, Any], Any] = make_dict_structure_fn(
            cls, conv, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
        )

        def hook(value: Any, hint: Any) -> Any:
            if not isinstance(value, dict):
                raise _TypeProblem(value, "a table")
            return base(value, hint)

        return hook

    conv.register_structure_hook_factory(attrs.has, table_guard)
    return conv


_CONVERTER = make_converter()


_PARSE_ERRORS = (ClassValidationError, IterableValidationError, SpecError, _TypeProblem)


def parse_spec(text: str, *, source: str = "<spec>", base_dir: str | None = None) -> Spec:
    """
    Parse a TOML spec into a ``Spec``.

    Args:
        text: the TOML text.
        source: how to name the spec in messages (usually its path).
        base_dir: folder that relative ``dataset.path`` values are joined to (no disk access).

    Returns:
        The frozen spec, with ``dataset.path`` joined to ``base_dir`` when relative.

    Raises:
        SpecError: with every problem found (TOML syntax, unknown keys, wrong types, ranges), in the
            order the fields are declared.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, (SpecProblem("", f"expected valid TOML ({exc})"),)) from None
    try:
        spec = _CONVERTER.structure(raw, Spec)
    except _PARSE_ERRORS as exc:
        # The raw pass comes first so that values are shown as written (2, not 2.0).
        problems = _raw_problems(raw, Spec, "") + _collect(exc, "")
        raise SpecError(source, _ordered(problems)) from None
    if base_dir is not None and spec.dataset.path is not None and not os.path.isabs(spec.dataset.path):
        joined = os.path.normpath(os.path.join(base_dir, spec.dataset.path))
        spec = attrs.evolve(spec, dataset=attrs.evolve(spec.dataset, path=joined))
    return spec


def spec_hash(text: str) -> str:
    """
    A short stable hash of a spec's text (recorded in the manifest).
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _notes_path(exc: BaseException) -> str | None:
    for note in getattr(exc, "__notes__", []):
        name = getattr(note, "name", None)
        if name is not None and isinstance(name, str):
            return name
        if isinstance(note, str) and note.startswith("@index "):
            return f"[{note.removeprefix('@index ')}]"
        if isinstance(note, str) and " @ attribute " in note:
            return note.rsplit(" @ attribute ", 1)[1]
    return None


def _collect(exc: BaseException, prefix: str) -> list[SpecProblem]:
    """
    Turn cattrs' exception tree into problems with dotted paths.

    Range and cross-field problems raised by ``__attrs_post_init__`` come back here too; ``_ordered``
    drops them where ``_raw_problems`` already found them.
    """
    out: list[SpecProblem] = []
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            name = _notes_path(sub)
            if name is None:
                path = prefix
            elif name.startswith("["):
                path = prefix + name
            else:
                path = _join(prefix, name)
            out += _collect(sub, path)
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        return [SpecProblem(prefix, _unknown_key(exc.cl, key)) for key in sorted(exc.extra_fields)]
    if isinstance(exc, _TypeProblem):
        return [SpecProblem(prefix, exc.expected, exc.value, has_value=True)]
    if isinstance(exc, KeyError):
        return [SpecProblem(prefix, "expected a value (this key is required)")]
    if isinstance(exc, SpecError):
        return [attrs.evolve(p, path=_join(prefix, p.path)) for p in exc.problems]
    return [SpecProblem(prefix, str(exc))]


def _unknown_key(cls: type, key: str) -> str:
    allowed = [f.name for f in attrs.fields(cls)]
    if cls is VariantSpec and key in _hints(SamplingSpec):
        overrides = [n for n in allowed if n in _hints(SamplingSpec)]
        return f'unknown key "{key}" (a variant may override only {", ".join(overrides)})'
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"unknown key {format_toml_value(key)}{hint}"


def _raw_problems(raw: Any, cls: type, prefix: str) -> list[SpecProblem]:
    """
    Range and cross-field problems found on the raw TOML of one table and the tables inside it.

    cattrs never builds a table with a type problem, nor the tables around it, so their range and
    cross-field checks would not run; this pass runs the range checks on every value of the right
    type, and each cross-field check whose fields parse on their own.
    """
    if not isinstance(raw, dict):
        return []
    out = _field_problems(cls, raw, prefix)
    parsed: dict[str, Any] = {}
    defaults = cls()
    for f in attrs.fields(cls):
        hint = _hints(cls)[f.name]
        path = _join(prefix, f.name)
        value = raw.get(f.name)
        if attrs.has(hint):
            out += _raw_problems(value, hint, path)
        elif typing.get_origin(hint) is tuple and attrs.has(get_args(hint)[0]) and isinstance(value, list):
            for i, item in enumerate(value):
                out += _raw_problems(item, get_args(hint)[0], f"{path}[{i}]")
        if f.name not in raw:
            parsed[f.name] = getattr(defaults, f.name)
            continue
        try:
            parsed[f.name] = _CONVERTER.structure(value, hint)
        except _PARSE_ERRORS:
            continue
    return out + _cross_problems(cls, parsed, prefix)


def _ordered(problems: Sequence[SpecProblem]) -> tuple[SpecProblem, ...]:
    """
    Deduplicate and order problems as the fields are declared (unknown keys first in their table).
    """
    unique: dict[tuple[str, str], SpecProblem] = {}
    for p in problems:
        unique.setdefault((p.path, p.expected), p)
    return tuple(sorted(unique.values(), key=lambda p: _field_order(p.path)))


def _field_order(path: str) -> tuple[int, ...]:
    """
    The position of a problem path among the declared fields: ``variant[1].name`` -> (3, 1, 0).
    """
    out: list[int] = []
    cls: type | None = Spec
    for part in path.replace("[", ".[").split(".") if path else []:
        if part.startswith("["):
            out.append(int(part.strip("[]")))
            continue
        names = [f.name for f in attrs.fields(cls)] if cls is not None else []
        if part not in names:  # not a field (cannot happen for problems made here); sort it last
            out.append(len(names))
            break
        out.append(names.index(part))
        cls = _table_class(_hints(cls)[part])
    return tuple(out)


def _table_class(hint: Any) -> type | None:
    """
    The spec class a field holds: itself (also when optional), or the item class of a tuple of tables;
    None for values.
    """
    args = [a for a in get_args(hint) if a is not type(None)]
    if type(None) in get_args(hint) and len(args) == 1 and attrs.has(args[0]):
        hint = args[0]
    if attrs.has(hint):
        return typing.cast("type", hint)
    if typing.get_origin(hint) is tuple and attrs.has(get_args(hint)[0]):
        return typing.cast("type", get_args(hint)[0])
    return None
