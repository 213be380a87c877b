"""
Profiles from one compiled call (``index_kernels.top_rows``, used by ``sample_users``) against the
per-user recipe they replace: one ``np.lexsort`` per user.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmrec import index_kernels, sampling
from llmrec.data import Ratings
from llmrec.ragged import Ragged
from llmrec.sampling import RatingIndex, build_index, sample_users
from llmrec.spec import SamplingSpec

I16 = np.iinfo(np.int16)
I32 = np.iinfo(np.int32)


def _reference_profile(
    index: RatingIndex, dense_user: int, size: int, *, newest_first: bool, before_day: int | None
) -> npt.NDArray[np.int32]:
    """
    The former ``sampling._profile``: filter by date, one lexsort, the first ``size``.
    """
    lo, hi = index.user_start[dense_user], index.user_start[dense_user + 1]
    movies = index.user_movies[lo:hi]
    days = index.user_days[lo:hi].astype(np.int32)
    stars = index.user_stars[lo:hi].astype(np.int32)
    if before_day is not None:
        past = days < before_day
        movies, days, stars = movies[past], days[past], stars[past]
    order = np.lexsort((movies, -days if newest_first else days, -stars))
    return movies[order[:size]]


def _reference(
    index: RatingIndex, rows: npt.NDArray[np.int64], size: int, newest_first: bool, before_day: int | None
) -> Ragged[np.int32]:
    return Ragged.from_rows(
        [
            _reference_profile(index, int(u), size, newest_first=newest_first, before_day=before_day)
            for u in rows
        ],
        np.int32,
    )


def _assert_same(got: Ragged[np.int32], want: Ragged[np.int32]) -> None:
    assert got.offsets.dtype == np.int64
    assert got.values.dtype == np.int32
    assert got.offsets.tolist() == want.offsets.tolist()
    assert got.values.tolist() == want.values.tolist()


def _random_index(rng: np.random.Generator, *, n_users: int, empty_share: float) -> RatingIndex:
    """
    A RatingIndex over random rows, some of them empty (``build_index`` never makes an empty row, but
    the kernel must handle one); few distinct stars and days, so ties on both are common.
    """
    lengths = np.where(rng.random(n_users) < empty_share, 0, rng.integers(1, 60, n_users))
    start = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=start[1:])
    movies = np.concatenate(
        [np.sort(rng.choice(200, size=int(k), replace=False)) for k in lengths] + [np.zeros(0, np.int64)]
    ).astype(np.int32)
    n = int(start[-1])
    return RatingIndex(
        user_ids=np.arange(n_users, dtype=np.int32) * 3 + 1,
        user_start=start,
        user_movies=movies,
        user_stars=rng.integers(1, 6, n).astype(np.int8),
        user_days=rng.integers(-3, 4, n).astype(np.int16),
        movie_start=np.zeros(201, dtype=np.int64),
        movie_users=np.zeros(0, dtype=np.int32),
        movie_stars=np.zeros(0, dtype=np.int8),
        n_movies=200,
    )


@pytest.mark.parametrize("newest_first", [True, False])
@pytest.mark.parametrize("size", [1, 3, 10, 32, 33, 80])
@pytest.mark.parametrize("before_day", [None, -4, -3, 0, 2, 4])
def test_kernel_matches_the_per_user_lexsort(newest_first, size, before_day):
    """Any size (insertion up to 32, a sort above), both date orders, cuts keeping all, some or none."""
    rng = np.random.default_rng([size, 99 if before_day is None else before_day + 10, newest_first])
    index = _random_index(rng, n_users=150, empty_share=0.1)
    rows = np.arange(150, dtype=np.int64)

    got = sampling._profiles(index, rows, size, newest_first=newest_first, before_day=before_day)

    want = _reference(index, rows, size, newest_first, before_day)
    _assert_same(got, want)
    assert (want.lengths == 0).any()  # the empty rows are there


def test_a_cut_before_every_date_gives_only_empty_rows():
    """before_day at the earliest date keeps nothing: every row is there, and empty."""
    index = _random_index(np.random.default_rng(5), n_users=20, empty_share=0.0)

    got = sampling._profiles(index, np.arange(20), 10, newest_first=True, before_day=-3)

    assert len(got) == 20
    assert got.offsets.tolist() == [0] * 21


def test_rows_in_any_order_and_repeated():
    """The kernel follows the rows it is given: reversed, repeated, a subset."""
    index = _random_index(np.random.default_rng(6), n_users=40, empty_share=0.2)
    rows = np.array([39, 0, 0, 17, 5, 39, 2], dtype=np.int64)

    got = sampling._profiles(index, rows, 4, newest_first=False, before_day=1)

    _assert_same(got, _reference(index, rows, 4, False, 1))


def test_no_rows_give_an_empty_ragged():
    """No users: no rows, and the values keep their dtype."""
    index = _random_index(np.random.default_rng(7), n_users=5, empty_share=0.0)

    got = sampling._profiles(index, np.zeros(0, dtype=np.int64), 10, newest_first=True)

    assert len(got) == 0
    assert got.values.dtype == np.int32


# every value at the edges of its type: the packed key must keep them apart and in order
extreme_stars = st.sampled_from([-128, -1, 0, 1, 5, 10, 126, 127])
extreme_days = st.sampled_from([I16.min, I16.min + 1, -1, 0, 1, I16.max - 1, I16.max])
extreme_movies = st.sampled_from([I32.min, I32.min + 1, -1, 0, 1, 17770, I32.max - 1, I32.max])


@given(
    rows=st.lists(
        st.lists(
            st.tuples(extreme_movies, extreme_stars, extreme_days), max_size=12, unique_by=lambda r: r[0]
        ),
        max_size=8,
    ),
    size=st.integers(1, 40),
    newest_first=st.booleans(),
    before_day=st.none() | st.integers(-(2**40), 2**40) | extreme_days,
)
def test_kernel_on_extreme_values(rows, size, newest_first, before_day):
    """Stars, days and movie ids at the ends of int8, int16 and int32, and cuts far outside the dates."""
    flat = [r for row in rows for r in row]
    start = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=start[1:])
    index = RatingIndex(
        user_ids=np.arange(len(rows), dtype=np.int32),
        user_start=start,
        user_movies=np.array([r[0] for r in flat], dtype=np.int32),
        user_stars=np.array([r[1] for r in flat], dtype=np.int8),
        user_days=np.array([r[2] for r in flat], dtype=np.int16),
        movie_start=np.zeros(1, dtype=np.int64),
        movie_users=np.zeros(0, dtype=np.int32),
        movie_stars=np.zeros(0, dtype=np.int8),
        n_movies=0,
    )
    dense = np.arange(len(rows), dtype=np.int64)

    got = sampling._profiles(index, dense, size, newest_first=newest_first, before_day=before_day)

    _assert_same(got, _reference(index, dense, size, newest_first, before_day))


def test_kernel_reads_the_rows_it_is_given_directly():
    """top_rows on hand-made columns: stars first, then the newest day, then the lower movie id."""
    start = np.array([0, 4, 4, 6], dtype=np.int64)
    movies = np.array([9, 4, 7, 2, 1, 3], dtype=np.int32)
    stars = np.array([5, 5, 5, 4, 1, 1], dtype=np.int8)
    days = np.array([3, 3, 8, 9, 0, 0], dtype=np.int16)

    offsets, values = index_kernels.top_rows(
        start, movies, stars, days, np.array([0, 1, 2], dtype=np.int64), 3, True, 1 << 15
    )

    assert offsets.tolist() == [0, 3, 3, 5]
    assert values.tolist() == [7, 4, 9, 1, 3]


@pytest.mark.parametrize("star_scale", [1, 2])
@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_sample_users_profiles_equal_the_per_user_recipe(star_scale, order):
    """Through sample_users on a built index (all users, and a global cut), as before the kernel."""
    rng = np.random.default_rng([star_scale, len(order)])
    n = 3000
    user = rng.integers(0, 200, n)
    movie = rng.integers(0, 300, n)
    keep = np.unique(user * 1000 + movie, return_index=True)[1]
    ratings = Ratings(
        user=user[keep] * 7 + 3,
        movie=movie[keep],
        stars=rng.integers(1, 5 * star_scale + 1, len(keep)),
        day=rng.integers(0, 6, len(keep)),
        star_scale=star_scale,
    )
    index = build_index(ratings)
    for before_day in (None, 3):
        spec = SamplingSpec(users="all", min_five_star_ratings=1, profile_size=5, profile_date_order=order)
        sample = sample_users(index, spec, seed=0, before_day=before_day)
        dense = index.dense(sample.users)

        want = _reference(index, dense, 5, order == "newest_first", before_day)
        assert len(sample.users) > 100
        _assert_same(sample.profiles, want)
