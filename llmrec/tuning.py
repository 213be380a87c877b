"""
Choosing the classic baselines' settings and the reference baseline on the validation users.

Every classic baseline the spec names is fitted at each setting of its grid (EASE: ``ease_lambdas``;
ItemKNN: ``item_knn_neighbors``; Random and MostPopular have nothing to set) on interactions that hold
neither the validation nor the test users, asked for every validation user's list, and scored with
``evaluation.tune_metric`` against the validation users' ground truth. Each baseline keeps its best
setting (ties: the earlier in its grid, so the first value, the default, wins a tie), and the baseline
whose best score is highest (ties: the earlier in ``evaluation.baselines``) becomes the reference the
LLMs are compared with. The chosen settings are then refitted on the baselines' own data (without the
test users only). Nothing here reads a test user's ground truth: the test users are not an input.

With fewer than ``evaluation.tune_min_users`` validation users nothing is tuned: each grid's first value
is used and the reference is the first of EASE, ItemKNN, MostPopular, Random that the spec lists.

Pure: no files, no clock, no global random state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmrec.baselines import (
    Baseline,
    Interactions,
    fit_ease,
    fit_item_knn,
    fit_popular,
    fit_random,
    recommend_many,
)
from llmrec.metrics import score_list
from llmrec.results import BaselineTuning, TuningCandidate
from llmrec.spec import EvaluationSpec
from llmrec.stats import derive_seed

__all__ = [
    "BASELINE_LABELS",
    "FALLBACK_ORDER",
    "Candidate",
    "Setting",
    "candidate_lists",
    "choose",
    "chosen_settings",
    "default_settings",
    "fit_baseline",
    "grid",
    "not_tuned",
]

BASELINE_LABELS = {"random": "Random", "popular": "MostPopular", "item_knn": "ItemKNN", "ease": "EASE"}
"""Display label of each baseline kind."""
FALLBACK_ORDER = ("ease", "item_knn", "popular", "random")
"""The reference baseline when nothing is tuned: the first of these the spec lists."""

Setting = float | int | str
"""EASE's λ (float), ItemKNN's neighbourhood (int or "all"), or "" for a baseline with nothing to set."""
Candidate = tuple[str, Setting]
"""(baseline kind, setting)."""


def grid(evaluation: EvaluationSpec) -> tuple[Candidate, ...]:
    """
    Every (kind, setting) to try, in the spec's baseline order and each grid's order.
    """
    out: list[Candidate] = []
    for kind in evaluation.baselines:
        if kind == "ease":
            out += [(kind, float(l2)) for l2 in evaluation.ease_lambdas]
        elif kind == "item_knn":
            out += [(kind, k) for k in evaluation.item_knn_neighbors]
        else:
            out.append((kind, ""))
    return tuple(out)


def default_settings(evaluation: EvaluationSpec) -> dict[str, Setting]:
    """
    Each baseline's setting when nothing is tuned: the first value of its grid.
    """
    out: dict[str, Setting] = {}
    for kind, setting in grid(evaluation):
        out.setdefault(kind, setting)
    return out


def fit_baseline(
    kind: str,
    setting: Setting,
    evaluation: EvaluationSpec,
    seed: int,
    catalogue: npt.ArrayLike,
    interactions: Interactions,
) -> Baseline:
    """
    One classic baseline at one setting.
    """
    if kind == "random":
        return fit_random(derive_seed(seed, "baseline/random"), catalogue)
    if kind == "popular":
        return fit_popular(interactions)
    if kind == "item_knn":
        neighbours = None if setting == "all" else int(setting)
        return fit_item_knn(interactions, n_items=evaluation.baseline_items, neighbours=neighbours)
    return fit_ease(interactions, n_items=evaluation.baseline_items, l2=float(setting))


def candidate_lists(
    evaluation: EvaluationSpec,
    seed: int,
    catalogue: npt.ArrayLike,
    interactions: Interactions,
    profiles: Sequence[npt.ArrayLike],
    n: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Candidate, list[list[int]]]:
    """
    Every candidate's lists for the given (validation) profiles, each fitted on ``interactions``
    (which must hold neither the validation nor the test users) and dropped once it has answered.
    """
    candidates = grid(evaluation)
    out: dict[Candidate, list[list[int]]] = {}
    for j, (kind, setting) in enumerate(candidates):
        model = fit_baseline(kind, setting, evaluation, seed, catalogue, interactions)
        out[(kind, setting)] = recommend_many(model, profiles, n)
        del model
        if progress is not None:
            progress(j + 1, len(candidates))
    return out


def choose(
    evaluation: EvaluationSpec,
    lists: Mapping[Candidate, Sequence[Sequence[int]]],
    truths: Sequence[npt.ArrayLike],
    *,
    fit: str,
) -> BaselineTuning:
    """
    Score each candidate's lists against the validation users' ground truth and choose.

    Args:
        evaluation: the spec's evaluation section (grids, metric, threshold).
        lists: each candidate's lists, aligned with ``truths``.
        truths: the validation users' ground-truth movie ids (users with an empty one are left out).
        fit: what the candidates were fitted on (recorded).

    Returns:
        The settings, the reference baseline and every candidate's score; a ``not_tuned`` result when
        there are fewer than ``tune_min_users`` validation users.
    """
    relevant = [frozenset(int(m) for m in np.asarray(t).tolist()) for t in truths]
    scorable = [i for i, rel in enumerate(relevant) if rel]  # an empty ground truth scores NaN
    users = len(scorable)
    if users < evaluation.tune_min_users:
        return not_tuned(evaluation, users, fit=fit)
    names = (evaluation.tune_metric,)
    scored: list[tuple[str, Setting, float]] = []
    for kind, setting in grid(evaluation):
        rows = lists[(kind, setting)]
        values = [score_list(list(rows[i]), relevant[i], names)[0] for i in scorable]
        scored.append((kind, setting, float(np.mean(values))))
    best: dict[str, tuple[Setting, float]] = {}
    for kind, setting, score in scored:
        if kind not in best or score > best[kind][1]:
            best[kind] = (setting, score)
    reference = evaluation.baselines[0]
    for kind in evaluation.baselines:
        if best[kind][1] > best[reference][1]:
            reference = kind
    return BaselineTuning(
        metric=evaluation.tune_metric,
        validation_users=users,
        tuned=True,
        fit=fit,
        reference=BASELINE_LABELS[reference],
        settings=_settings({k: s for k, (s, _) in best.items()}),
        candidates=tuple(TuningCandidate(BASELINE_LABELS[k], s, v) for k, s, v in scored),
    )


def not_tuned(evaluation: EvaluationSpec, users: int, *, fit: str) -> BaselineTuning:
    """
    The defaults (each grid's first value) and the fixed reference, saying why.
    """
    reference = next(k for k in FALLBACK_ORDER if k in evaluation.baselines)
    return BaselineTuning(
        metric=evaluation.tune_metric,
        validation_users=users,
        tuned=False,
        fit=fit,
        reference=BASELINE_LABELS[reference],
        settings=_settings(default_settings(evaluation)),
        note=f"only {users:,} validation users (tune_min_users = {evaluation.tune_min_users:,})",
    )


def chosen_settings(tuning: BaselineTuning) -> dict[str, Setting]:
    """
    The chosen setting per baseline kind (kinds without a setting are absent).
    """
    kinds = {label: kind for kind, label in BASELINE_LABELS.items()}
    return {kinds[label]: setting for label, setting in tuning.settings}


def _settings(by_kind: Mapping[str, Any]) -> tuple[tuple[str, Setting], ...]:
    return tuple((BASELINE_LABELS[k], s) for k, s in by_kind.items() if k in ("ease", "item_knn"))
