"""
Stage ``baselines`` (per variant and seed): the classic recommenders' lists for the test users.

Fitted on a leakage-free source (the ratings without any test user's ratings, or the training users'
profile -> ground-truth pairs), never on the full matrix from which the ground truth was derived.
First each baseline's setting and the reference baseline are chosen on the validation users
(``llmrec.tuning``), from fits that also leave the validation users out; then the chosen settings are
fitted on the source and asked for the test users' lists. Fitting on the ratings, and the candidates'
validation lists, are shared by every variant of a seed (the split is per user), so the pipeline passes
a ``fitted`` cache in.
Under ``ground_truth = "future_global"`` the ratings are also cut at the variant's global cut date:
only those dated before it are fitted on (and tuned on); the cache is keyed by (seed, cut day or None).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.baselines import (
    Baseline,
    Interactions,
    interactions_from_pairs,
    interactions_from_ratings,
    interactions_without,
    recommend_many,
)
from llmrec.codec import CONVERTER
from llmrec.data import Dataset
from llmrec.executor import Executor
from llmrec.ground_truth import ratings_before
from llmrec.keys import stage_key
from llmrec.ragged import Ragged
from llmrec.results import BaselineTuning
from llmrec.spec import EvaluationSpec
from llmrec.stages.ground_truth import Truth
from llmrec.stages.sample import Sampled
from llmrec.stages.training_files import TrainingFiles
from llmrec.store import StageDir
from llmrec.tuning import (
    BASELINE_LABELS,
    Candidate,
    candidate_lists,
    choose,
    chosen_settings,
    default_settings,
    fit_baseline,
    grid,
    not_tuned,
)

__all__ = ["LABELS", "BaselineLists", "SeedFits", "compute", "key", "load", "save"]

LABELS = BASELINE_LABELS


@attrs.frozen(eq=False)
class BaselineLists:
    """
    Each baseline's ranked list per test user (rows aligned with the variant's test members).
    """

    kinds: tuple[str, ...]
    names: tuple[str, ...]
    sources: tuple[str, ...]
    lists: tuple[Ragged[np.int64], ...]
    tuning: BaselineTuning | None = None
    """The settings and reference baseline chosen on the validation users."""


@attrs.define
class SeedFits:
    """
    What the variants of one seed share when the baselines fit on the ratings: the fitting data (with
    the co-occurrence matrices cached on it), the candidates' lists for the validation users and the
    fitted baselines.
    """

    interactions: Interactions
    """Every rating but the test users'."""
    tuning: Interactions
    """Every rating but the validation and test users'."""
    profiles: Ragged[np.int32] | None = None
    """The validation profiles ``lists`` answer (rows: the sample's validation users, in order)."""
    lists: dict[Candidate, list[list[int]]] = attrs.field(factory=dict)
    fitted: dict[Candidate, Baseline] = attrs.field(factory=dict)


def key(
    evaluation: EvaluationSpec, n: int, seed: int, variant: str, inputs: dict[str, str], version: str
) -> str:
    """
    The stage key: the baseline settings, the list length, the seed, the sample and the ground truth.
    """
    reads = {
        "baselines": evaluation.baselines,
        "baseline_fit": evaluation.baseline_fit,
        "baseline_items": evaluation.baseline_items,
        "ease_lambdas": evaluation.ease_lambdas,
        "item_knn_neighbors": evaluation.item_knn_neighbors,
        "tune_metric": evaluation.tune_metric,
        "tune_min_users": evaluation.tune_min_users,
        "n": n,
        "seed": seed,
    }
    return stage_key(f"baselines/{variant}", reads, inputs, version=version)


def compute(
    evaluation: EvaluationSpec,
    n: int,
    seed: int,
    dataset: Callable[[], Dataset],
    sampled: Sampled,
    truth: Truth,
    files: TrainingFiles,
    shared: MutableMapping[tuple[int, int | None], SeedFits],
    progress: Callable[[int, int], None],
    executor: Executor | None = None,
) -> BaselineLists:
    """
    Choose the settings on the validation users, fit (or reuse the seed's fitted) baselines and rank
    for every test user of the variant; the test users' lists are tasks of ``executor`` (in this
    process without one), which changes no list.
    """
    kinds = evaluation.baselines
    candidates = len(grid(evaluation))
    steps = candidates + len(kinds)
    progress(0, steps)
    validation = files.members["validation"]
    enough = len(validation) >= evaluation.tune_min_users
    seed_fits: SeedFits | None = None
    if evaluation.baseline_fit == "train_pairs":
        # the training pairs hold neither validation nor test users: tuned and refitted on the same pairs
        train = files.members["train"]
        interactions = interactions_from_pairs(
            [truth.profiles[i] for i in train], [truth.truth.movies[i] for i in train]
        )
        tuning_data = interactions
        fit_name = "train_pairs"
    else:
        key = (seed, truth.cut_day)
        for other in [s for s in shared if s[0] != seed]:  # one seed's matrices at a time
            del shared[other]
        if key not in shared:
            test_users = sampled.sample.users[sampled.splits == 2]
            ratings = ratings_before(dataset().ratings, truth.cut_day)
            interactions = interactions_from_ratings(ratings, exclude_users=test_users)
            tuning_data = interactions_without(interactions, sampled.sample.users[sampled.splits == 1])
            shared[key] = SeedFits(interactions=interactions, tuning=tuning_data)
        seed_fits = shared[key]
        interactions, tuning_data = seed_fits.interactions, seed_fits.tuning
        fit_name = "ratings_without_validation_and_test_users"
    catalogue = dataset().movies.ids
    if enough:
        lists = _validation_lists(
            evaluation, seed, catalogue, tuning_data, sampled, truth, validation, n, seed_fits, progress
        )
        tuning = choose(evaluation, lists, [truth.truth.movies[i] for i in validation], fit=fit_name)
    else:
        tuning = not_tuned(evaluation, len(validation), fit=fit_name)
    settings = {**default_settings(evaluation), **chosen_settings(tuning)}
    fitted: list[Baseline] = []
    for kind in kinds:
        found = seed_fits.fitted.get((kind, settings[kind])) if seed_fits is not None else None
        if found is None:
            found = fit_baseline(kind, settings[kind], evaluation, seed, catalogue, interactions)
            if seed_fits is not None:
                seed_fits.fitted[(kind, settings[kind])] = found
        fitted.append(found)
    lists_out: list[Ragged[np.int64]] = []
    for j, baseline in enumerate(fitted):
        rows = recommend_in_tasks(executor, baseline, [truth.profiles[i] for i in files.members["test"]], n)
        lists_out.append(Ragged.from_rows(rows, np.int64))
        progress(candidates + j + 1, steps)
    return BaselineLists(
        kinds=tuple(kinds),
        names=tuple(b.name for b in fitted),
        sources=tuple(b.source for b in fitted),
        lists=tuple(lists_out),
        tuning=tuning,
    )


def recommend_in_tasks(
    executor: Executor | None, baseline: Baseline, profiles: Sequence[npt.ArrayLike], n: int
) -> list[list[int]]:
    """
    ``recommend_many(baseline, profiles, n)``, in pieces of profiles handed to ``executor`` (about
    ``_TASKS_PER_WORKER`` per worker, at least ``_MIN_TASK_PROFILES`` each; fewer profiles than that
    are ranked here). Each list depends on its profile alone, so the lists are the same.
    """
    if executor is None or executor.parallelism < 2 or len(profiles) < 2 * _MIN_TASK_PROFILES:
        return recommend_many(baseline, profiles, n)
    per = max(_MIN_TASK_PROFILES, -(-len(profiles) // (executor.parallelism * _TASKS_PER_WORKER)))
    tasks = [list(profiles[a : a + per]) for a in range(0, len(profiles), per)]
    parts = executor.map(_recommend_task, (baseline, n), tasks)
    return [row for part in parts for row in part]


_MIN_TASK_PROFILES = 500
"""Profiles per task at least (a task costs a fork's share and the pickling of its lists)."""
_TASKS_PER_WORKER = 4


def _recommend_task(shared: tuple[Baseline, int], profiles: list[npt.ArrayLike]) -> list[list[int]]:
    """One executor task: the lists of a piece of the profiles."""
    baseline, n = shared
    return recommend_many(baseline, profiles, n)


def _validation_lists(
    evaluation: EvaluationSpec,
    seed: int,
    catalogue: npt.NDArray[np.integer[Any]],
    tuning_data: Interactions,
    sampled: Sampled,
    truth: Truth,
    validation: Sequence[int],
    n: int,
    seed_fits: SeedFits | None,
    progress: Callable[[int, int], None],
) -> dict[Candidate, list[list[int]]]:
    """
    Every candidate's list per validation member (aligned with ``validation``). On the ratings, lists
    are made once per seed for all of the sample's validation users and reused by every variant whose
    profiles are the same.
    """
    steps = len(grid(evaluation)) + len(evaluation.baselines)
    if seed_fits is None:
        profiles = [truth.profiles[i] for i in validation]
        return candidate_lists(
            evaluation, seed, catalogue, tuning_data, profiles, n, lambda k, _: progress(k, steps)
        )
    rows = np.flatnonzero(sampled.splits == 1)
    mine = Ragged.from_rows([truth.profiles[int(i)] for i in rows], np.int32)
    same = seed_fits.profiles is not None and (
        np.array_equal(seed_fits.profiles.offsets, mine.offsets)
        and np.array_equal(seed_fits.profiles.values, mine.values)
    )
    if not same:
        seed_fits.lists = candidate_lists(
            evaluation,
            seed,
            catalogue,
            tuning_data,
            [mine[k] for k in range(len(rows))],
            n,
            lambda k, _: progress(k, steps),
        )
        seed_fits.profiles = mine
    at = np.searchsorted(rows, np.asarray(validation, dtype=np.int64))
    return {c: [lists[int(k)] for k in at] for c, lists in seed_fits.lists.items()}


def save(folder: StageDir, value: BaselineLists) -> None:
    """
    Store the lists as arrays and their names as JSON.
    """
    arrays = {}
    for j, lists in enumerate(value.lists):
        arrays[f"offsets_{j}"] = lists.offsets
        arrays[f"values_{j}"] = lists.values
    folder.write_arrays("lists", arrays)
    folder.write_json(
        "meta",
        {
            "kinds": list(value.kinds),
            "names": list(value.names),
            "sources": list(value.sources),
            "tuning": CONVERTER.unstructure(value.tuning),
        },
    )


def load(folder: StageDir) -> BaselineLists:
    """
    Read stored lists.
    """
    meta = folder.read_json("meta")
    arrays = folder.read_arrays("lists")
    assert isinstance(meta, dict)
    assert arrays is not None
    n = len(meta["kinds"])
    return BaselineLists(
        kinds=tuple(meta["kinds"]),
        names=tuple(meta["names"]),
        sources=tuple(meta["sources"]),
        lists=tuple(
            Ragged(arrays[f"offsets_{j}"].astype(np.int64), arrays[f"values_{j}"].astype(np.int64))
            for j in range(n)
        ),
        tuning=CONVERTER.structure(meta["tuning"], BaselineTuning) if meta.get("tuning") else None,
    )
