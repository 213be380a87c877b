"""
Shared fixtures: a hand-made tiny ratings table, a seeded generator, Hypothesis profiles.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from llmrec.data import Dataset, Movies, Ratings

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED = Path(__file__).resolve().parents[2] / "shared"
"""The read-only folder of real data excerpts beside the checkout (absent in a user's fresh clone)."""

# (user, movie, stars, day): user 10 is the only eligible user (four 5-star ratings); see test_sampling.py
TINY_ROWS = [
    (10, 1, 5, 100),
    (10, 2, 5, 200),
    (10, 3, 5, 150),
    (10, 4, 5, 50),
    (10, 5, 3, 300),
    (10, 6, 4, 10),
    (20, 2, 5, 20),
    (20, 7, 2, 30),
    (20, 8, 4, 40),
    (30, 3, 4, 20),
    (30, 7, 3, 25),
    (40, 1, 5, 60),
    (40, 3, 5, 61),
    (40, 7, 5, 62),
    (40, 5, 1, 63),
    (50, 2, 3, 70),
    (50, 8, 5, 71),
    (60, 9, 5, 80),
]


@pytest.fixture
def tiny_ratings() -> Ratings:
    """
    A few dozen hand-made ratings whose samples are worked out by hand in the tests.
    """
    cols = list(zip(*TINY_ROWS, strict=True))
    return Ratings(user=cols[0], movie=cols[1], stars=cols[2], day=cols[3])


@pytest.fixture
def tiny_dataset(tiny_ratings: Ratings) -> Dataset:
    """
    The tiny ratings with a nine-movie catalogue.
    """
    ids = np.arange(1, 10)
    titles = [f"Movie {i}" for i in ids]
    return Dataset(ratings=tiny_ratings, movies=Movies(ids=ids, years=[1990 + i for i in ids], titles=titles))


@pytest.fixture
def rng() -> np.random.Generator:
    """
    A seeded generator for tests that need random inputs.
    """
    return np.random.default_rng(20261129)
