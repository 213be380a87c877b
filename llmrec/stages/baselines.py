"""
Stage ``baselines`` (per variant and seed): the classic recommenders' lists for the test users.

Fitted on a leakage-free source (the ratings without any test user's ratings, or the training users'
profile -> ground-truth pairs), never on the full matrix from which the ground truth was derived.
Under ``ground_truth = "future_global"`` the ratings are also cut at the variant's global cut date:
only those dated before it are fitted on. Fitting on the ratings is shared by every variant of a
seed with the same cut (the split is per user), so the pipeline passes a ``fitted`` cache in, keyed
by (seed, cut day or None).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence

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
from llmrec.data import Dataset
from llmrec.ground_truth import ratings_before
from llmrec.keys import stage_key
from llmrec.ragged import Ragged
from llmrec.spec import EvaluationSpec
from llmrec.stages.ground_truth import Truth
from llmrec.stages.sample import Sampled
from llmrec.stages.training_files import TrainingFiles
from llmrec.stats import derive_seed
from llmrec.store import StageDir

__all__ = ["LABELS", "BaselineLists", "compute", "key", "load", "save"]

LABELS = {"random": "Random", "popular": "MostPopular", "item_knn": "ItemKNN", "ease": "EASE"}


@attrs.frozen(eq=False)
class BaselineLists:
    """
    Each baseline's ranked list per test user (rows aligned with the variant's test members).
    """

    kinds: tuple[str, ...]
    names: tuple[str, ...]
    sources: tuple[str, ...]
    lists: tuple[Ragged[np.int64], ...]


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
        "n": n,
        "seed": seed,
    }
    return stage_key(f"baselines/{variant}", reads, inputs, version=version)


def fit(
    evaluation: EvaluationSpec, seed: int, dataset: Dataset, interactions: Interactions
) -> list[Baseline]:
    """
    The spec's classic baselines, in its order, fitted on ``interactions``.
    """
    fitted: list[Baseline] = []
    for kind in evaluation.baselines:
        if kind == "random":
            fitted.append(fit_random(derive_seed(seed, "baseline/random"), dataset.movies.ids))
        elif kind == "popular":
            fitted.append(fit_popular(interactions))
        elif kind == "item_knn":
            fitted.append(fit_item_knn(interactions, n_items=evaluation.baseline_items))
        else:
            fitted.append(fit_ease(interactions, n_items=evaluation.baseline_items))
    return fitted


def compute(
    evaluation: EvaluationSpec,
    n: int,
    seed: int,
    dataset: Callable[[], Dataset],
    sampled: Sampled,
    truth: Truth,
    files: TrainingFiles,
    shared: MutableMapping[tuple[int, int | None], list[Baseline]],
    progress: Callable[[int, int], None],
) -> BaselineLists:
    """
    Fit (or reuse the seed's fitted) baselines and rank for every test user of the variant.
    """
    kinds = evaluation.baselines
    progress(0, len(kinds))
    if evaluation.baseline_fit == "train_pairs":
        train = files.members["train"]
        interactions = interactions_from_pairs(
            [truth.profiles[i] for i in train], [truth.truth.movies[i] for i in train]
        )
        fitted = fit(evaluation, seed, dataset(), interactions)
    else:
        if (seed, truth.cut_day) not in shared:
            test_users = sampled.sample.users[sampled.splits == 2]
            ratings = ratings_before(dataset().ratings, truth.cut_day)
            interactions = interactions_from_ratings(ratings, exclude_users=test_users)
            shared[seed, truth.cut_day] = fit(evaluation, seed, dataset(), interactions)
        fitted = shared[seed, truth.cut_day]
    lists: list[Ragged[np.int64]] = []
    for j, baseline in enumerate(fitted):
        rows: Sequence[Sequence[int]] = [
            list(baseline.recommend(truth.profiles[i], n)) for i in files.members["test"]
        ]
        lists.append(Ragged.from_rows(rows, np.int64))
        progress(j + 1, len(kinds))
    return BaselineLists(
        kinds=tuple(kinds),
        names=tuple(b.name for b in fitted),
        sources=tuple(b.source for b in fitted),
        lists=tuple(lists),
    )


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
        "meta", {"kinds": list(value.kinds), "names": list(value.names), "sources": list(value.sources)}
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
    )
