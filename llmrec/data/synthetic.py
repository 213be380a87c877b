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

``write_synthetic_netflix`` is the other generator: it writes Netflix-format files of any size
straight to disk, a chunk at a time (about 1.5 s per 10 million ratings), shaped like the genuine
set rather than like a spec; see its docstring for the model.
"""

from __future__ import annotations

import functools
import itertools
import os
import statistics
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.data import Dataset, Movies, Ratings
from llmrec.data.netflix import RATINGS_GLOB, TITLES_FILE, _keep_freed_memory
from llmrec.spec import SyntheticSpec

__all__ = [
    "SynthSummary",
    "SyntheticData",
    "draw_synthetic",
    "generate_synthetic",
    "write_synthetic_netflix",
]

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


# --- Netflix-format files at any scale -----------------------------------------------------------

_NETFLIX_RATINGS = 100_480_507
_NETFLIX_USERS = 480_189
_NETFLIX_MOVIES = 17_770
_MOVIE_SCALING = 1 / 3  # a share s of Netflix's ratings has s ** (1/3) of its movies
_MIN_MOVIES = 4  # _draw_movies repeats a title and leaves a year unknown
_MIN_USER_ID = 10  # two digits at least: _LineWriter writes rating lines of 16 bytes or more
_MAX_SYNTH_RATINGS = 2_000_000_000
_ACTIVITY_SD = 1.3  # log-normal user activity
_POPULARITY_SD = 2.8  # log-normal movie popularity ...
_POPULARITY_Z = 2.6  # ... its normal deviate squashed smoothly into +-2.6 (no movie too rare or too common)
_CLASS_WIDTH = 0.05  # users whose activity differs by less than about 5% share an activity class
_TASTE_JITTER = 0.03  # how far a movie's audience in one class strays from the movie's taste
_STAR_BASE, _TASTE_WEIGHT, _QUALITY_SD, _LENIENCY_SD, _STAR_NOISE_SD = 3.35, 0.9, 0.45, 0.35, 0.85
# a user joins at 1999-11-11 + U ** 0.7 of the way to 2005-12-01 and rates at join + V ** 1.5 of the
# way to 2005-12-31 (U, V uniform): about 45% of the ratings fall in 2005, 24% in 2004, 15% in 2003
_JOIN_POWER, _DAY_POWER = 0.7, 1.5
_CHUNK_RATINGS = 1 << 20
_SPAN = _LAST_DAY + 1 - _FIRST_DAY


@attrs.frozen
class SynthSummary:
    """
    What ``write_synthetic_netflix`` wrote.
    """

    ratings: int
    """Rating lines written (the number asked for)."""

    users: int
    """Distinct customers with at least one rating."""

    movies: int
    """Movies in ``movie_titles.csv``."""

    paths: tuple[str, ...]
    """The files written: ``combined_data_1.txt`` onwards, then ``movie_titles.csv``."""

    bytes: int
    """Bytes written over all files."""

    def __str__(self) -> str:
        return (
            f"{self.ratings:,} ratings by {self.users:,} users of {self.movies:,} movies "
            f"({len(self.paths) - 1} rating files, {self.bytes:,} bytes)"
        )


def write_synthetic_netflix(
    n_ratings: int, folder: str | os.PathLike[str], *, seed: int = 0, files: int = 4
) -> SynthSummary:
    """
    Write a synthetic Netflix Prize dataset of exactly ``n_ratings`` ratings, in Netflix's format.

    The data is shaped like the genuine set, scaled. At 100,480,507 ratings it has 480,189 users
    (customer ids spread over 10..2,649,429) and 17,770 movies; a smaller set keeps about 209
    ratings per user on average and has fewer movies (17,770 x the cube root of its share: 3,830 at
    a hundredth, at least 4), so it is denser and its tails are shorter.

    - User activity and movie popularity are heavy-tailed (log-normal). At full scale the median
      user rates about 100 movies and the busiest several thousand; the top movie is rated by about
      40% of the users, the median movie by about 500.
    - No user rates a movie twice. Users and movies sit on a circle of tastes: a movie is rated
      mostly by users near its place, and rated higher by the nearest.
    - Stars also follow a movie quality and a user leniency: mostly 3s and 4s, as in Netflix.
    - Dates run from a user's joining day (1999-11-11 to 2005-12-01, more of them late) to
      2005-12-31, most of them in 2004 and 2005.
    - Within a movie block the customers are in no particular order.

    The rating files hold runs of movies with about equal rating counts; titles are made up as
    ``generate_synthetic`` makes them. The work is vectorised and done about a million ratings at a
    time, so memory stays bounded (about 400 MB at full scale) and the writer takes about 1.5 s per
    10 million ratings. The same ``(n_ratings, seed, files)`` always writes the same bytes.

    Args:
        n_ratings: how many rating lines to write, 1 to 2,000,000,000.
        folder: where to write; created when missing. ``movie_titles.csv`` and every
            ``combined_data_*.txt`` already there are replaced or removed, so that the folder reads
            back as exactly this dataset.
        seed: the random seed.
        files: how many ``combined_data_N.txt`` files to spread the ratings over (Netflix has 4);
            fewer when there are too few ratings to give each file some (the reader refuses a
            rating file without ratings).

    Returns:
        The counts and the paths written.

    Raises:
        ValueError: when ``n_ratings`` is outside 1-2,000,000,000 or ``files`` is below 1.
    """
    if not 1 <= n_ratings <= _MAX_SYNTH_RATINGS:
        msg = f"n_ratings must lie in 1-{_MAX_SYNTH_RATINGS:,}, got {n_ratings:,}"
        raise ValueError(msg)
    if files < 1:
        msg = f"files must be at least 1, got {files}"
        raise ValueError(msg)
    _keep_freed_memory()
    rng = np.random.default_rng(seed)
    plan = _Plan.draw(n_ratings, rng)
    titles = _titles_text(_draw_movies(rng, plan.movies))

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"combined_data_{i}.txt" for i in range(1, files + 1)]
    for stale in root.glob(RATINGS_GLOB):
        if stale.name not in names:
            stale.unlink()
    paths: list[str] = []
    written = 0
    rated = np.zeros(plan.users, dtype=np.bool_)
    cuts = plan.file_cuts(files)
    runs = [(a, b) for a, b in itertools.pairwise(cuts) if plan.rated_between(a, b)]
    for unused in names[len(runs) :]:  # the reader refuses a rating file without ratings
        (root / unused).unlink(missing_ok=True)
    for name, (first, stop) in zip(names, runs, strict=False):
        path = root / name
        with path.open("wb") as out:
            for lo, hi in plan.chunks(first, stop):
                text, users = plan.chunk_text(lo, hi, rng)
                rated[users] = True
                out.write(text.data)
                written += len(text)
        paths.append(str(path))
    (root / TITLES_FILE).write_bytes(titles)
    paths.append(str(root / TITLES_FILE))
    return SynthSummary(n_ratings, int(rated.sum()), plan.movies, tuple(paths), written + len(titles))


def _titles_text(movies: Movies) -> bytes:
    lines = (
        f"{movie},{year or 'NULL'},{title}\n"
        for movie, year, title in zip(movies.ids.tolist(), movies.years.tolist(), movies.titles, strict=True)
    )
    return "".join(lines).encode("iso-8859-1")


@attrs.frozen(eq=False)
class _Plan:
    """
    Who rates which movie, decided up front; the lines themselves are drawn chunk by chunk.

    Users fall into activity classes (activity equal within about 5%). ``cell_count`` users of a class
    rate a movie: a run of the class's members, who are listed in random order so that a member's
    place is its taste, centred on the movie's taste. A run never holds a user twice.
    """

    users: int
    movies: int
    cell_movie: _Ints
    """Movie index of each (movie, class) pair with ratings, sorted by movie."""
    cell_first: _Ints
    """Where the pair's run starts in ``members``."""
    cell_count: _Ints
    """How many users of the class rate the movie."""
    members: _Ints
    """User indices, class by class, each class listed twice so that a run never wraps."""
    taste: _Floats
    leniency: _Floats
    join: _Ints
    movie_taste: _Floats
    movie_score: _Floats
    movie_total: _Ints
    """Cumulative ratings up to and including each movie."""
    lines: _LineWriter

    @classmethod
    def draw(cls, n_ratings: int, rng: np.random.Generator) -> _Plan:
        share = n_ratings / _NETFLIX_RATINGS
        n_movies = min(
            _NETFLIX_MOVIES, max(_MIN_MOVIES, int(np.ceil(_NETFLIX_MOVIES * share**_MOVIE_SCALING)))
        )
        n_users = max(1, round(_NETFLIX_USERS * share), -(-2 * n_ratings // n_movies))

        # activity classes; a member's place in its class (random order) is its taste
        activity = rng.lognormal(0.0, _ACTIVITY_SD, n_users)
        level = np.floor(np.log(activity / activity.min()) / _CLASS_WIDTH).astype(np.int64)
        order = np.lexsort((rng.random(n_users), level))
        new_class = np.ones(n_users, dtype=np.bool_)
        new_class[1:] = level[order][1:] != level[order][:-1]
        starts = np.flatnonzero(new_class)
        sizes = np.diff(np.append(starts, n_users))
        klass = np.cumsum(new_class) - 1
        class_activity = np.add.reduceat(activity[order], starts) / sizes
        taste = np.empty(n_users)
        taste[order] = (np.arange(n_users) - starts[klass] + 0.5) / sizes[klass]
        members = np.concatenate(
            [np.tile(order[a : a + s], 2) for a, s in zip(starts.tolist(), sizes.tolist(), strict=True)]
        )

        # users of class g rating movie m: about size[g] * min(1, scale * activity[g] * popularity[m])
        z = rng.standard_normal(n_movies)
        popularity = np.exp(_POPULARITY_SD * _POPULARITY_Z * np.tanh(z / _POPULARITY_Z))
        counts = _counts(popularity[:, None] * class_activity[None, :], sizes, n_ratings, rng)
        cell_movie, cell_class = np.nonzero(counts)
        cell_count = counts[cell_movie, cell_class]
        movie_taste = rng.random(n_movies)
        centre = (movie_taste[cell_movie] + rng.normal(0.0, _TASTE_JITTER, len(cell_movie))) % 1.0
        size = sizes[cell_class]
        offset = np.floor(centre * size - cell_count / 2).astype(np.int64) % size

        quality = rng.normal(0.0, _QUALITY_SD, n_movies)
        leniency = rng.normal(0.0, _LENIENCY_SD, n_users)
        join = _FIRST_DAY + np.floor(rng.random(n_users) ** _JOIN_POWER * (_LAST_JOIN - _FIRST_DAY))
        top = max(_MAX_USER_ID, 2 * n_users + _MIN_USER_ID)
        ids = rng.choice(top + 1 - _MIN_USER_ID, size=n_users, replace=False) + _MIN_USER_ID
        return cls(
            users=n_users,
            movies=n_movies,
            cell_movie=cell_movie.astype(np.int64),
            cell_first=2 * starts[cell_class] + offset,
            cell_count=cell_count,
            members=members,
            taste=taste,
            leniency=leniency,
            join=join.astype(np.int64),
            movie_taste=movie_taste,
            movie_score=_STAR_BASE + quality,
            movie_total=np.cumsum(counts.sum(axis=1)),
            lines=_LineWriter.build(ids.astype(np.int64), n_movies),
        )

    def rated_between(self, first: int, stop: int) -> int:
        """
        The number of ratings of the movies ``first`` to ``stop - 1``.
        """
        if stop <= first:
            return 0
        return int(self.movie_total[stop - 1]) - (int(self.movie_total[first - 1]) if first else 0)

    def file_cuts(self, files: int) -> list[int]:
        """
        Movie indices that split the movies into ``files`` runs of about equal rating counts.
        """
        total = int(self.movie_total[-1])
        inner = [int(np.searchsorted(self.movie_total, total * i // files)) for i in range(1, files)]
        return [0, *inner, self.movies]

    def chunks(self, first: int, stop: int) -> list[tuple[int, int]]:
        """
        Runs of movies in ``[first, stop)`` holding about ``_CHUNK_RATINGS`` ratings each.
        """
        runs = []
        lo = first
        while lo < stop:
            before = int(self.movie_total[lo - 1]) if lo else 0
            hi = int(np.searchsorted(self.movie_total, before + _CHUNK_RATINGS, side="right"))
            hi = min(max(hi, lo + 1), stop)
            runs.append((lo, hi))
            lo = hi
        return runs

    def chunk_text(self, lo: int, hi: int, rng: np.random.Generator) -> tuple[_Bytes, _Ints]:
        """
        The lines of movies ``lo`` to ``hi - 1`` and the user index of each rating.
        """
        c0, c1 = np.searchsorted(self.cell_movie, [lo, hi])
        first, count = self.cell_first[c0:c1], self.cell_count[c0:c1]
        n = int(count.sum())
        before = int(self.movie_total[lo - 1]) if lo else 0
        per_movie = np.diff(self.movie_total[lo:hi], prepend=before)
        block_movie = np.arange(lo, hi)[per_movie > 0]
        block_count = per_movie[per_movie > 0]
        if n == 0:
            return np.empty(0, dtype=np.uint8), _NO_KEYS

        # the run of each (movie, class) pair, then shuffled within each movie's block by an affine
        # map j -> (shift + step * j) mod count, step coprime with count
        slot = np.repeat(first - (np.cumsum(count) - count), count) + np.arange(n)
        block_start = np.cumsum(block_count) - block_count
        block = np.repeat(np.arange(len(block_count)), block_count)
        step = rng.integers(1, np.maximum(block_count, 2))
        for _ in range(64):
            shared = np.gcd(step, block_count) != 1
            if not shared.any():
                break
            step[shared] = step[shared] % block_count[shared] + 1
        step[np.gcd(step, block_count) != 1] = 1  # never needed in practice: the map must be one-to-one
        shift = rng.integers(0, block_count)
        within = np.arange(n) - block_start[block]
        source = (shift[block] + step[block] * within) % block_count[block] + block_start[block]
        user = self.members[slot[source]]

        # stars: movie score + user leniency + closeness of tastes + noise; dates after joining
        noise_byte, day_share = _random_bytes(rng, n)
        movie = block_movie[block]
        apart = np.abs(self.taste[user] - self.movie_taste[movie])
        apart = np.minimum(apart, 1.0 - apart)  # on the circle: 0 to 0.5
        score = self.movie_score[movie] + self.leniency[user] + _TASTE_WEIGHT * (1.0 - 4.0 * apart)
        score += _star_noise()[noise_byte]
        stars = np.clip(np.rint(score), 1, 5).astype(np.int64)
        join = self.join[user]
        day = join + (((_LAST_DAY + 1 - join) * _day_shares()[day_share]) >> 16)
        text = self.lines.render(user, (stars - 1) * _SPAN + (day - _FIRST_DAY), block_movie, block_count)
        return text, user


def _random_bytes(rng: np.random.Generator, n: int) -> tuple[npt.NDArray[np.uint8], _Ints]:
    """
    One random byte and one random 16-bit share per rating (fast: raw generator bytes).
    """
    raw = np.frombuffer(rng.bytes(3 * n), dtype=np.uint8)
    share = raw[n:].view(np.uint16).astype(np.int64)
    return raw[:n], share


@functools.cache
def _day_shares() -> _Ints:
    """
    ``65536 * (i / 65536) ** _DAY_POWER`` for a 16-bit random ``i``: how far past joining a rating falls.
    """
    shares: _Ints = np.floor((np.arange(65536) / 65536) ** _DAY_POWER * 65536).astype(np.int64)
    return shares


@functools.cache
def _star_noise() -> _Floats:
    """
    256 evenly spaced quantiles of the star noise (normal), looked up by a random byte.
    """
    normal = statistics.NormalDist(0.0, _STAR_NOISE_SD)
    return np.array([normal.inv_cdf((i + 0.5) / 256) for i in range(256)])


def _counts(weight: _Floats, sizes: _Ints, total: int, rng: np.random.Generator) -> _Ints:
    """
    Integer ``counts[m, g] <= sizes[g]`` summing to ``total``, each within one of
    ``sizes[g] * min(1, scale * weight[m, g])`` for the scale that makes those sum to ``total``.
    """

    def expected(scale: float) -> _Floats:
        out: _Floats = np.multiply(sizes, np.minimum(1.0, scale * weight), dtype=np.float64)
        return out

    lo = total / float((weight * sizes).sum())  # no cell saturated: the sum is at most total here
    hi = lo
    while expected(hi).sum() < total:
        hi *= 2.0
    for _ in range(45):  # the bracket shrinks to 2**-45 of its width; the rounding fixes the rest
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected(mid).sum() < total else (lo, mid)
    want = expected(hi).ravel()
    # systematic rounding: one uniform offset, so the counts sum to the rounded total
    offset = rng.random()
    edges = np.floor(np.cumsum(want) + offset)
    counts = np.diff(edges, prepend=np.floor(offset)).astype(np.int64)
    cap = np.broadcast_to(sizes, weight.shape).ravel()
    counts = np.minimum(counts, cap)
    short = total - int(counts.sum())
    if short > 0:
        room = np.flatnonzero(counts < cap)
        pick = room[np.argsort(counts[room] - want[room], kind="stable")[:short]]
        counts[pick] += 1
    elif short < 0:
        used = np.flatnonzero(counts > 0)
        pick = used[np.argsort(want[used] - counts[used], kind="stable")[:-short]]
        counts[pick] -= 1
    return counts.reshape(weight.shape)


_Bytes = npt.NDArray[np.uint8]
_U64 = npt.NDArray[np.uint64]


@attrs.frozen(eq=False)
class _LineWriter:
    """
    Lookup tables that turn (user, stars and day) into ``CustomerID,R,YYYY-MM-DD`` lines.

    A rating line of length ``n`` (16 or more) is written as two little-endian stores: 8 bytes at its
    start (the id digits and the first tail bytes) and 16 bytes ending at its end (the id's last two
    digits and the 14-byte tail ``,R,YYYY-MM-DD\n``). Both lie inside the line, so no store touches
    another line; a header line ``MovieID:`` is stored first and its spill is overwritten.
    """

    id_word: _U64
    """Per user: the id's digits, first digit in the lowest byte."""
    id_shift: _U64
    """Per user: 8 x the number of digits."""
    id_last_two: _U64
    """Per user: the id's last two digits, in the two lowest bytes."""
    length: _Ints
    """Per user: the length of its rating lines, LF included."""
    tail_head: _U64
    """Per (stars, day): the first 8 tail bytes."""
    tail_mid: _U64
    """Per (stars, day): the first 6 tail bytes, shifted up two bytes."""
    tail_end: _U64
    """Per (stars, day): the last 8 tail bytes."""
    header: _U64
    """Per movie index: ``MovieID:\n``."""
    header_length: _Ints

    @classmethod
    def build(cls, ids: _Ints, n_movies: int) -> _LineWriter:
        id_word, id_length = _digit_words(ids)
        last_two = _digit_words(ids % 100 + 100)[0] >> np.uint64(8)  # "1dd": drop the leading 1
        tails = (
            np.array(
                [
                    f",{stars},{np.datetime64(day, 'D')}\n".encode()
                    for stars in range(1, 6)
                    for day in range(_FIRST_DAY, _FIRST_DAY + _SPAN)
                ]
            )
            .view(np.uint8)
            .reshape(-1, 14)
        )
        padded = np.zeros((len(tails), 16), dtype=np.uint8)
        padded[:, 2:] = tails
        head_word, head_length = _digit_words(np.arange(1, n_movies + 1))
        head_word |= (np.uint64(ord(":")) | np.uint64(10) << np.uint64(8)) << (
            head_length.astype(np.uint64) << np.uint64(3)
        )
        return cls(
            id_word=id_word,
            id_shift=id_length.astype(np.uint64) << np.uint64(3),
            id_last_two=last_two,
            length=id_length + 14,
            tail_head=padded[:, 2:10].copy().view("<u8").reshape(-1).astype(np.uint64),
            tail_mid=padded[:, 0:8].copy().view("<u8").reshape(-1).astype(np.uint64),
            tail_end=padded[:, 8:16].copy().view("<u8").reshape(-1).astype(np.uint64),
            header=head_word,
            header_length=head_length + 2,
        )

    def render(self, user: _Ints, key: _Ints, block_movie: _Ints, block_count: _Ints) -> _Bytes:
        """
        The text of movie blocks: a header for each ``block_movie``, then its ``block_count`` ratings.
        """
        n = len(user)
        length = self.length[user]
        head_length = self.header_length[block_movie]
        block = np.repeat(np.arange(len(block_count)), block_count)
        start = np.cumsum(length) - length + np.cumsum(head_length)[block]
        block_start = np.cumsum(block_count) - block_count
        head_start = start[block_start] - head_length
        size = int(length.sum() + head_length.sum())
        buf = np.empty(size + 16, dtype=np.uint8)
        word = np.ndarray((size + 8,), dtype="<u8", buffer=buf, strides=(1,))
        word[head_start] = self.header[block_movie]
        word[start] = self.id_word[user] | (self.tail_head[key] << self.id_shift[user])
        pair = np.empty((n, 2), dtype="<u8")
        pair[:, 0] = self.id_last_two[user] | self.tail_mid[key]
        pair[:, 1] = self.tail_end[key]
        wide = np.ndarray((size,), dtype="V16", buffer=buf, strides=(1,))
        wide[start + length - 16] = pair.view("V16").reshape(n)
        return buf[:size]


def _digit_words(values: _Ints) -> tuple[_U64, _Ints]:
    """
    The decimal digits of each value (at most 8) as a word, first digit in the lowest byte, and
    the number of digits.
    """
    length = np.ones(len(values), dtype=np.int64)
    for k in range(1, 8):
        length += values >= 10**k
    word = np.zeros(len(values), dtype=np.uint64)
    rest = values.copy()
    for k in range(8):
        place = length - 1 - k  # the byte of the k-th digit from the right
        inside = place >= 0
        digit = (rest % 10 + ord("0")).astype(np.uint64)
        word |= np.where(inside, digit << (np.maximum(place, 0).astype(np.uint64) << np.uint64(3)), 0).astype(
            np.uint64
        )
        rest //= 10
    return word, length
