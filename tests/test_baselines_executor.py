"""
The test users' baseline lists as tasks of an executor: the same lists as one ``recommend_many``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from llmrec.baselines import (
    fit_ease,
    fit_item_knn,
    fit_popular,
    fit_random,
    interactions_from_ratings,
    recommend_many,
)
from llmrec.data import Ratings
from llmrec.executor import SerialExecutor, executor_for
from llmrec.stages import baselines as stage


def _ratings(rng: np.random.Generator, n_users: int = 600, n_movies: int = 120) -> Ratings:
    users = np.repeat(np.arange(1, n_users + 1), 15)
    movies = np.concatenate([rng.choice(n_movies, size=15, replace=False) for _ in range(n_users)]) + 1
    stars = rng.integers(1, 6, size=len(users))
    return Ratings(user=users, movie=movies, stars=stars, day=np.zeros(len(users)))


@pytest.mark.parametrize("kind", ["random", "popular", "item_knn", "ease"])
def test_lists_in_tasks_equal_one_call(monkeypatch, kind):
    """1,100 profiles in pieces of at least 100 on two forked workers: every list as one call gives it."""
    monkeypatch.setattr(stage, "_MIN_TASK_PROFILES", 100)
    rng = np.random.default_rng(3)
    ratings = _ratings(rng)
    interactions = interactions_from_ratings(ratings, exclude_users=[1, 2, 3])
    catalogue = np.arange(1, 121)
    fitted: Any = {
        "random": lambda: fit_random(7, catalogue),
        "popular": lambda: fit_popular(interactions),
        "item_knn": lambda: fit_item_knn(interactions, neighbours=20),
        "ease": lambda: fit_ease(interactions, n_items=80, l2=50.0),
    }[kind]()
    profiles = [rng.choice(catalogue, size=int(rng.integers(1, 11)), replace=False) for _ in range(1100)]
    executor = executor_for(2)
    pieces: list[int] = []
    map_tasks = executor.map

    def counted(fn, shared, items, done=None):
        pieces.append(len(items))
        return map_tasks(fn, shared, items, done=done)

    monkeypatch.setattr(executor, "map", counted)

    lists = stage.recommend_in_tasks(executor, fitted, profiles, 10)

    assert pieces == [8]  # about four pieces per worker, of at least 100 profiles
    assert lists == recommend_many(fitted, profiles, 10)


def test_few_profiles_or_one_worker_are_ranked_here(monkeypatch):
    """Below two tasks' worth of profiles, or on a serial executor, no map is made."""
    rng = np.random.default_rng(4)
    interactions = interactions_from_ratings(_ratings(rng), exclude_users=[])
    popular = fit_popular(interactions)
    profiles = [np.array([1, 2]), np.array([5])] * 10

    def no_map(*_: object, **__: object) -> object:
        msg = "no executor map expected"
        raise AssertionError(msg)

    for executor in (executor_for(2), SerialExecutor()):
        monkeypatch.setattr(executor, "map", no_map)
        assert stage.recommend_in_tasks(executor, popular, profiles, 5) == recommend_many(
            popular, profiles, 5
        )
