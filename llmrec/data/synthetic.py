"""
Synthetic Netflix-like data with real collaborative signal, for demos, tests and benchmarks.

The model behind the data:

- ``spec.tastes`` latent taste groups. Each movie belongs to one group and each user to one group
  (both spread evenly, in random order).
- Movie popularity is Zipf-like: the movie of popularity rank ``r`` (random order) has weight
  ``(r + 1) ** -0.8``.
- User activity is heavy-tailed (log-normal) with mean about ``spec.mean_ratings`` and a floor of 15
  ratings (less when the mean is below 30), capped at the number of movies.
- About 70% of a user's movies are drawn from their own group's movies (capped at the group's size),
  the rest from all movies, both weighted by popularity. No user rates a movie twice: a pair drawn
  twice counts once and is made up for by a few more draws from all movies (users who would rate
  nearly every movie may end a little short).
- Stars come from a latent score: high for movies of the user's own group (mostly 4 and 5, many 5s),
  low for the others (mostly 1 to 3), plus a per-movie quality, a per-user leniency and noise.
- Each user joins on a day between 1999-11-11 and 2005-12-01 and rates on days between that and
  2005-12-31.
- User ids are distinct random ids up to 2,649,429 (like Netflix's), movie ids are 1..``spec.movies``
  with made-up titles, years 1950-2005, a few unknown years (0) and a few titles repeated with another
  year.

Everything comes from one ``numpy.random.Generator`` seeded with ``seed``: the same (spec, seed)
always gives the same data. The work is vectorised: there is a Python loop per taste group and per
chunk of users, never per user or per rating, and the cost grows with the number of ratings
(about 3 s for 10 million).
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.data import Dataset, Movies, Ratings
from llmrec.spec import SyntheticSpec

__all__ = ["SyntheticData", "draw_synthetic", "generate_synthetic"]

_IN_GROUP_SHARE = 0.7
_POPULARITY_EXPONENT = 0.8
_ACTIVITY_SIGMA = 0.9
_MIN_RATINGS = 15
_MAX_USER_ID = 2_649_429  # the largest customer id in the Netflix Prize data
_MAX_MOVIES = int(np.iinfo(np.int16).max)
_FIRST_DAY = int(np.datetime64("1999-11-11", "D").astype(np.int64))
_LAST_DAY = int(np.datetime64("2005-12-31", "D").astype(np.int64))
_LAST_JOIN = int(np.datetime64("2005-12-01", "D").astype(np.int64))
# latent star score: centre for own-group and other movies, and the spread of each noise term
_SCORE_IN, _SCORE_OUT = 4.3, 2.1
_MOVIE_SD, _USER_SD, _NOISE_SD = 0.4, 0.3, 0.8
# selection: race over the whole pool when a user needs more than 1/_DENSE_SHARE of it (holding
# at most _CHUNK_CELLS users x pool cells at once), else draw with replacement
_DENSE_SHARE = 8
_CHUNK_CELLS = 1 << 22
_TOP_UP_ROUNDS = 3

_ADJECTIVES = (
    "Silent", "Midnight", "Broken", "Golden", "Hidden", "Last", "Lonely", "Crimson", "Frozen", "Wild",
    "Dark", "Bright", "Lost", "Secret", "Savage", "Distant", "Burning", "Endless", "Quiet", "Restless",
    "Forgotten", "Electric", "Iron", "Velvet", "Shattered", "Rising", "Fallen", "Eternal", "Wicked",
    "Gentle", "Scarlet", "Hollow", "Northern", "Final", "Sweet", "Bitter", "Little", "Second",
)  # fmt: skip
_NOUNS = (
    "Harbor", "Express", "Run", "River", "Road", "Garden", "Storm", "Empire", "Shadow", "Highway",
    "Kingdom", "Island", "Summer", "Winter", "Heart", "City", "Mountain", "Horizon", "Stranger",
    "Promise", "Game", "Journey", "Letter", "Witness", "Valley", "Frontier", "Station", "Dream",
    "Legacy", "Mirror", "Café", "Affair", "Hour", "Moon", "Fire", "Bridge", "Sister", "Detective",
    "Circus", "Ocean", "Thunder", "Angel", "Echo", "Season", "Reckoning", "Lullaby", "Country",
)  # fmt: skip
_ROMAN = ("II", "III", "IV")
_PATTERNS = 7

_Ints = npt.NDArray[np.int64]
_Floats = npt.NDArray[np.float64]
_NO_KEYS: _Ints = np.empty(0, dtype=np.int64)


@attrs.frozen(eq=False)
class SyntheticData:
    """
    A synthetic dataset and the hidden tastes that shaped it (for checking the signal).
    """

    dataset: Dataset
    """The ratings and catalogue."""

    user_ids: npt.NDArray[np.int32]
    """Every user id, in drawing order."""

    user_tastes: npt.NDArray[np.int16]
    """``user_tastes[i]`` is the taste group of ``user_ids[i]``."""

    movie_tastes: npt.NDArray[np.int16]
    """``movie_tastes[i]`` is the taste group of movie id ``i + 1``."""


def generate_synthetic(spec: SyntheticSpec, seed: int) -> Dataset:
    """
    Generate a Netflix-like dataset with taste-group structure.

    Args:
        spec: the sizes (users, movies, mean ratings per user, taste groups).
        seed: the random seed; the same (spec, seed) gives the same dataset.

    Returns:
        The dataset, ratings sorted by movie then user; ``source`` names the spec and seed.

    Raises:
        ValueError: when ``spec.movies`` exceeds 32767 (movie ids are int16).
    """
    return draw_synthetic(spec, seed).dataset


def draw_synthetic(spec: SyntheticSpec, seed: int) -> SyntheticData:
    """
    Generate a synthetic dataset together with the taste groups of its users and movies.

    Args:
        spec: the sizes (users, movies, mean ratings per user, taste groups).
        seed: the random seed; the same (spec, seed) gives the same data.

    Returns:
        The dataset (as ``generate_synthetic`` returns it) and the hidden taste groups.

    Raises:
        ValueError: when ``spec.movies`` exceeds 32767 (movie ids are int16).
    """
    if spec.movies > _MAX_MOVIES:
        msg = f"synthetic data holds at most {_MAX_MOVIES} movies (movie ids are int16), got {spec.movies}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    n_users, n_movies, tastes = spec.users, spec.movies, spec.tastes

    # catalogue and hidden structure
    movie_taste = rng.permutation(np.arange(n_movies) % tastes)
    user_taste = rng.permutation(np.arange(n_users) % tastes)
    popularity = ((1.0 + rng.permutation(n_movies)) ** -_POPULARITY_EXPONENT).astype(np.float64)
    quality = rng.normal(0.0, _MOVIE_SD, n_movies)
    leniency = rng.normal(0.0, _USER_SD, n_users)
    user_ids = _draw_user_ids(rng, n_users)
    movies = _draw_movies(rng, n_movies)

    # how many movies each user rates, and how many of those come from their own group
    floor = min(_MIN_RATINGS, spec.mean_ratings // 2)
    spread = rng.lognormal(-(_ACTIVITY_SIGMA**2) / 2, _ACTIVITY_SIGMA, n_users)
    count = np.minimum(np.rint(floor + (spec.mean_ratings - floor) * spread).astype(np.int64), n_movies)
    group_size = np.bincount(movie_taste, minlength=tastes)
    own = np.minimum(rng.binomial(count, _IN_GROUP_SHARE), group_size[user_taste])

    # which movies: about 70% from the user's own group, the rest from all movies, weighted by
    # popularity
    own_user: list[_Ints] = [_NO_KEYS]
    own_movie: list[_Ints] = [_NO_KEYS]
    for group in range(tastes):
        members = np.flatnonzero(user_taste == group)
        pool = np.flatnonzero(movie_taste == group)
        if len(members) and len(pool):
            row, col = _draw_from(rng, popularity[pool], own[members])
            own_user.append(members[row])
            own_movie.append(pool[col])
    any_user, any_movie = _draw_from(rng, popularity, count - own)
    cdf = np.cumsum(popularity) / popularity.sum()
    user_index = np.concatenate([*own_user, any_user])
    movie_index = np.concatenate([*own_movie, any_movie])

    # (movie, user rank by id) keys, sorted: the final order; repeated pairs are dropped and made up
    # for with a few more draws from all movies
    by_id = np.argsort(user_ids)
    rank = np.empty(n_users, dtype=np.int64)
    rank[by_id] = np.arange(n_users)
    pair = _distinct(movie_index * n_users + rank[user_index])
    for _ in range(_TOP_UP_ROUNDS):
        short = count[by_id] - np.bincount(pair % n_users, minlength=n_users)
        if not short.any():
            break
        row = np.repeat(np.arange(n_users), short)
        col = np.searchsorted(cdf, rng.random(len(row)), side="right")
        extra = _distinct(np.minimum(col, n_movies - 1) * n_users + row)
        at = np.minimum(np.searchsorted(pair, extra), len(pair) - 1)
        extra = extra[pair[at] != extra]
        pair = np.insert(pair, np.searchsorted(pair, extra), extra)
    movie_index, user_index = pair // n_users, by_id[pair % n_users]

    # stars from a latent score
    in_group = movie_taste[movie_index] == user_taste[user_index]
    score = (
        np.where(in_group, _SCORE_IN, _SCORE_OUT)
        + quality[movie_index]
        + leniency[user_index]
        + rng.normal(0.0, _NOISE_SD, len(user_index))
    )
    stars = np.clip(np.rint(score), 1, 5)

    # dates: each user rates between their joining day and the end of 2005
    join = rng.integers(_FIRST_DAY, _LAST_JOIN + 1, n_users)
    offset = rng.random(len(user_index)) * (_LAST_DAY + 1 - join[user_index])
    day = join[user_index] + offset.astype(np.int64)

    ratings = Ratings(user_ids[user_index], movie_index + 1, stars, day)
    dataset = Dataset(ratings, movies, source=f"synthetic(seed={seed}, {spec})")
    return SyntheticData(
        dataset,
        user_ids.astype(np.int32),
        user_taste.astype(np.int16),
        movie_taste.astype(np.int16),
    )


def _draw_from(rng: np.random.Generator, weights: _Floats, k: _Ints) -> tuple[_Ints, _Ints]:
    """
    Draw ``k[i]`` pool entries (row ``i``, column) for each row, weighted by ``weights``.

    Rows that need more than an eighth of the pool race over the whole pool (the ``k`` smallest
    ``Exp(1) / weight``: distinct entries, successive sampling without replacement). The others draw
    with replacement, which costs in proportion to ``k`` rather than to the pool; their few repeats
    are for the caller to drop.

    Returns:
        The rows and the pool columns drawn.
    """
    size = len(weights)
    dense = np.flatnonzero(k * _DENSE_SHARE > size)
    rows: list[_Ints] = [_NO_KEYS]
    cols: list[_Ints] = [_NO_KEYS]
    step = max(1, _CHUNK_CELLS // size)
    for first in range(0, len(dense), step):
        chunk = dense[first : first + step]
        race = rng.standard_exponential((len(chunk), size)) / weights
        r, c = _smallest(race, k[chunk])
        rows.append(chunk[r])
        cols.append(c)
    sparse = np.flatnonzero(k * _DENSE_SHARE <= size)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    row = np.repeat(sparse, k[sparse])
    rows.append(row)
    cols.append(np.minimum(np.searchsorted(cdf, rng.random(len(row)), side="right"), size - 1))
    return np.concatenate(rows), np.concatenate(cols)


def _distinct(keys: _Ints) -> _Ints:
    """
    The distinct keys, sorted (not ``np.unique``: numpy 2.4 hashes there, several times slower).
    """
    keys = np.sort(keys)
    first = np.ones(len(keys), dtype=np.bool_)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first]


def _smallest(keys: _Floats, k: _Ints) -> tuple[_Ints, _Ints]:
    """
    Row and column indices of the ``k[i]`` smallest keys of each row ``i``.
    """
    top = int(k.max()) if len(k) else 0
    if top == 0:
        return _NO_KEYS, _NO_KEYS
    n_cols = keys.shape[1]
    if top < n_cols:
        candidates = np.argpartition(keys, top - 1, axis=1)[:, :top]
    else:
        candidates = np.broadcast_to(np.arange(n_cols), keys.shape)
    picked = np.take_along_axis(keys, candidates, axis=1)
    ranked = np.take_along_axis(candidates, np.argsort(picked, axis=1, kind="stable"), axis=1)
    keep = np.arange(ranked.shape[1]) < k[:, None]
    row = np.broadcast_to(np.arange(len(k))[:, None], ranked.shape)
    return row[keep].astype(np.int64), ranked[keep].astype(np.int64)


def _draw_user_ids(rng: np.random.Generator, n_users: int) -> _Ints:
    """
    Distinct random user ids in 1..2,649,429 (or up to twice the user count when that is larger).
    """
    top = max(_MAX_USER_ID, 2 * n_users)
    return rng.choice(top, size=n_users, replace=False).astype(np.int64) + 1


def _draw_movies(rng: np.random.Generator, n_movies: int) -> Movies:
    """
    Made-up distinct titles, years 1950-2005 leaning recent, a few repeated titles and unknown years.
    """
    titles: list[str] = []
    seen: set[str] = set()
    while len(titles) < n_movies:
        batch = 2 * (n_movies - len(titles)) + 16
        pattern = rng.integers(0, _PATTERNS, batch)
        adj = rng.integers(0, len(_ADJECTIVES), (batch, 2))
        noun = rng.integers(0, len(_NOUNS), (batch, 3))
        roman = rng.integers(0, len(_ROMAN), batch)
        for i in range(batch):
            title = _title(int(pattern[i]), adj[i].tolist(), noun[i].tolist(), int(roman[i]))
            if title not in seen and len(titles) < n_movies:
                seen.add(title)
                titles.append(title)

    years = 1950 + np.rint(55 * rng.beta(2.5, 1.0, n_movies)).astype(np.int64)
    # about 1.5% of titles reuse another movie's title with another year (like Netflix's remakes)
    n_repeat = max(1, n_movies * 3 // 200)
    pick = rng.choice(n_movies, size=2 * n_repeat, replace=False)
    for copy, original in zip(pick[:n_repeat].tolist(), pick[n_repeat:].tolist(), strict=True):
        titles[copy] = titles[original]
        if years[copy] == years[original]:
            years[copy] = years[original] - 1 if years[original] > 1950 else years[original] + 1
    # about 0.5% unknown years, like Netflix's NULL
    others = np.setdiff1d(np.arange(n_movies), pick)  # so a repeated title keeps distinct years
    unknown = rng.choice(others, size=max(1, n_movies // 200), replace=False)
    years[unknown] = 0
    return Movies(np.arange(1, n_movies + 1), years, titles)


def _title(pattern: int, adj: list[int], noun: list[int], roman: int) -> str:
    a1, a2 = _ADJECTIVES[adj[0]], _ADJECTIVES[adj[1]]
    n1, n2, n3 = _NOUNS[noun[0]], _NOUNS[noun[1]], _NOUNS[noun[2]]
    if pattern == 0:
        return f"The {a1} {n1}"
    if pattern == 1:
        return f"{a1} {n1} {n2}"
    if pattern == 2:
        return f"{n1} of the {a1} {n2}"
    if pattern == 3:
        return f"{a1} {n1}"
    if pattern == 4:
        return f"{a1} {n1}, {a2} {n2}"
    if pattern == 5:
        return f"The {n1} {_ROMAN[roman]}"
    return f"{n1}, {n2} and the {n3}"
