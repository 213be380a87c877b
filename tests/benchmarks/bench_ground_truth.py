"""
Benchmark: ground truth for both paper variants at Netflix scale, against yesterday's implementation
and a naive per-user recipe.

Run it by hand (pytest does not collect ``bench_*.py``)::

    python tests/benchmarks/bench_ground_truth.py --data /work/bench-data/synthetic-ratings100000000-seed0
    python tests/benchmarks/bench_ground_truth.py --users all --naive-users 10 --data ...   # ~475k users
    python tests/benchmarks/bench_ground_truth.py --ratings 5000000                          # a quick look

Three processes, so that each number means one thing:

1. a generator process draws the synthetic ratings (``generate_synthetic``: about 480k users, 17,770
   movies, 209 ratings per user on average at 100M) and saves them as .npy files; its time (about
   a minute) and memory (about 10 GiB) are not measured; ``--data DIR`` keeps them for the next run;
2. a measuring process loads them and times ``build_index``, ``sample_users`` and
   ``derive_ground_truth`` for profileData50 (5-star neighbours, watch factor 0.5) and profileData60
   (4 stars, 0.6), ``--users`` users (10,000, or "all" eligible) and up to 10,000 neighbours each;
   it records its own peak RSS (``getrusage``), the largest forked worker's, and the peak
   proportional set size (PSS, shared pages counted once) of itself and its workers together,
   sampled every 0.5 s from /proc. Then, in this one process, the yardstick: yesterday's
   implementation (``_ScipyTruth`` below: a mask over all users per user, scipy row selection and a
   sparse matrix-vector product; kept here as it was) and today's ``derive_ground_truth`` on the same
   2,000 users spread over the sample, both variants, one process each, CPU time per user, results
   compared exactly. Last the naive recipe on 50 sampled users spread over the sample (plain numpy
   over the rating columns, one user at a time: ``np.isin`` over all ratings for the raters of the
   profile movies, ``np.unique``, the same seeded draw, ``np.isin`` over all ratings for the
   neighbours' ratings, ``np.unique`` counts) and a comparison of digests of both results (users,
   profiles, ground truth, shares, candidate and drawn counts);
3. this process prints the table and exits 1 when a target is missed (10,000 users: 40 s for index,
   sample and both variants; all users: 30 minutes for both variants; 6 GiB peak either way) or a
   result differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

# scipy ships no type information (scipy-stubs is a separate package)
import scipy.sparse as sp  # type: ignore[import-untyped,unused-ignore]

from llmrec.data import Ratings
from llmrec.data.synthetic import generate_synthetic
from llmrec.sampling import (
    GroundTruth,
    RatingIndex,
    Sample,
    _prefix_ends,
    build_index,
    derive_ground_truth,
    sample_users,
)
from llmrec.spec import SamplingSpec, SyntheticSpec

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # run as a script: the repository root holds the tests package
    sys.path.insert(0, str(_ROOT))

from tests.benchmarks.memory import process_tree, pss  # noqa: E402

TARGET_SECONDS = 40.0
"""10,000 users: index, sample and both variants."""
TARGET_ALL_SECONDS = 30 * 60.0
"""Every eligible user: both variants."""
TARGET_BYTES = 6 * 2**30
YARDSTICK_USERS = 2_000
NETFLIX_USERS = 480_189
NETFLIX_RATINGS = 100_480_507
NETFLIX_MOVIES = 17_770
MEAN_RATINGS = 209
TASTES = 16
COLUMNS = ("user", "movie", "stars", "day")
_CPU_FIELDS = ("user", "system", "children_user", "children_system")
SAMPLING = SamplingSpec(users=10_000, neighbors=10_000)


def _variants(sampling: SamplingSpec) -> dict[str, SamplingSpec]:
    return {
        "profileData50": attrs.evolve(sampling, neighbor_min_stars=5, watch_factor=0.5),
        "profileData60": attrs.evolve(sampling, neighbor_min_stars=4, watch_factor=0.6),
    }


VARIANTS = _variants(SAMPLING)


def _users(text: str) -> int | str:
    if text == "all":
        return text
    value = int(text)
    if value <= 0:
        msg = f"expected a positive integer or all, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ratings", type=int, default=100_000_000, help="about this many ratings")
    parser.add_argument("--seed", type=int, default=0, help="data and sampling seed")
    parser.add_argument("--workers", type=int, default=2, help="derive_ground_truth workers")
    parser.add_argument(
        "--users", type=_users, default=10_000, help='users to sample: a number or "all" eligible'
    )
    parser.add_argument(
        "--yardstick-users",
        type=int,
        default=YARDSTICK_USERS,
        help="users yesterday's and today's implementation both run on, in one process",
    )
    parser.add_argument(
        "--naive-users",
        type=int,
        default=50,
        help="users the naive recipe runs on (about 1.5 s each at 100M)",
    )
    parser.add_argument("--data", type=Path, help="keep the generated ratings here and reuse them")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate is not None:
        _generate(args.generate, args.ratings, args.seed)
        return 0
    if args.measure is not None:
        sampling = attrs.evolve(SAMPLING, users=args.users)
        found = _measure(
            args.measure, sampling, args.seed, args.workers, args.naive_users, args.yardstick_users
        )
        print(json.dumps(found))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_ground_truth_") as scratch:
        folder = args.data if args.data is not None else Path(scratch)
        started = time.perf_counter()
        reused = _cached(folder, args.ratings, args.seed)
        if not reused:
            print(f"generating about {args.ratings:,} ratings in {folder} ...", file=sys.stderr, flush=True)
            _child("--generate", folder, "--ratings", args.ratings, "--seed", args.seed)
        generated = time.perf_counter() - started
        print("measuring ...", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        out = _child(
            "--measure",
            folder,
            "--seed",
            args.seed,
            "--workers",
            args.workers,
            "--naive-users",
            args.naive_users,
            "--users",
            args.users,
            "--yardstick-users",
            args.yardstick_users,
        )
        result = json.loads(out.strip().splitlines()[-1])
    result.update(
        generated_s=generated,
        reused=reused,
        load_before=load,
        workers=args.workers,
        every=args.users == "all",
    )
    return _report(result)


def _child(*args: Any) -> str:
    command = [sys.executable, __file__, *map(str, args)]
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


# --- 1. data ---------------------------------------------------------------------------------------


def _synthetic_spec(ratings: int) -> SyntheticSpec:
    users = max(100, round(NETFLIX_USERS * ratings / NETFLIX_RATINGS))
    return SyntheticSpec(users=users, movies=NETFLIX_MOVIES, mean_ratings=MEAN_RATINGS, tastes=TASTES)


def _cached(folder: Path, ratings: int, seed: int) -> bool:
    meta = folder / "meta.json"
    want = {"spec": str(_synthetic_spec(ratings)), "seed": seed}
    return meta.is_file() and json.loads(meta.read_text()) == want


def _generate(folder: Path, ratings: int, seed: int) -> None:
    spec = _synthetic_spec(ratings)
    data = generate_synthetic(spec, seed).ratings
    folder.mkdir(parents=True, exist_ok=True)
    for name in COLUMNS:
        np.save(folder / f"{name}.npy", getattr(data, name))
    (folder / "meta.json").write_text(json.dumps({"spec": str(spec), "seed": seed}))


# --- 2. measuring ----------------------------------------------------------------------------------


class _PssSampler:
    """
    Peak PSS of this process and its children, sampled from /proc/<pid>/smaps_rollup.

    Every 0.5 s: reading smaps_rollup walks the page tables, and at every 0.1 s it cost the workers
    about 10% (most of it kernel time). The peak is in ``build_index`` (also in the process's own
    RSS); while workers run, memory holds steady.
    """

    def __init__(self, every: float = 0.5) -> None:
        self.peak = 0
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(pss(pid) for pid in process_tree(os.getpid())))
            self._stop.wait(self._every)


def _maxrss(who: int) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # kilobytes on Linux


def _measure(
    folder: Path, sampling: SamplingSpec, seed: int, workers: int, naive_users: int, yardstick_users: int
) -> dict[str, Any]:
    variants = _variants(sampling)
    ratings = Ratings(*(np.load(folder / f"{name}.npy") for name in COLUMNS))
    out: dict[str, Any] = {"ratings": len(ratings), "loaded_rss": _maxrss(resource.RUSAGE_SELF)}
    truths: dict[str, GroundTruth] = {}
    with _PssSampler() as pss:
        cpu_before = os.times()
        started = time.perf_counter()
        index = build_index(ratings)
        out["build_index_s"] = time.perf_counter() - started
        at = time.perf_counter()
        sample = sample_users(index, sampling, seed)
        out["sample_users_s"] = time.perf_counter() - at
        truth_cpu = os.times()
        for name, spec in variants.items():
            at = time.perf_counter()
            truths[name] = derive_ground_truth(index, sample, spec, seed, variant=name, workers=workers)
            out[f"{name}_s"] = time.perf_counter() - at
        out["truth_cpu_s"] = sum(getattr(os.times(), f) - getattr(truth_cpu, f) for f in _CPU_FIELDS)
        out["total_s"] = time.perf_counter() - started
        cpu_after = os.times()
    out.update(
        cpu_s=sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in _CPU_FIELDS),
        sys_s=sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in _CPU_FIELDS[1::2]),
    )
    out.update(
        users=len(index.user_ids),
        movies=index.n_movies,
        eligible=sample.eligible,
        sampled=len(sample.users),
        rss_self=_maxrss(resource.RUSAGE_SELF),
        rss_worker=_maxrss(resource.RUSAGE_CHILDREN),
        pss_peak=pss.peak,
    )
    for name, truth in truths.items():
        out[f"{name}_candidates"] = float(np.mean(truth.candidates)) if len(truth.candidates) else 0.0
        out[f"{name}_drawn"] = float(np.mean(truth.drawn)) if len(truth.drawn) else 0.0
        out[f"{name}_kept"] = sum(len(m) > 0 for m in truth.movies)
    out.update(_yardstick(index, sample, variants, seed, yardstick_users))
    del index

    # the naive recipe on a spread of the sampled users, after everything above was measured
    started = time.perf_counter()
    ids, fives = _naive_users(ratings)
    naive_sample = _naive_draw(ids, fives, sampling, seed)
    out["naive_draw_s"] = time.perf_counter() - started
    picks = np.unique(np.linspace(0, len(sample.users) - 1, min(naive_users, len(sample.users))).astype(int))
    fast_digest = hashlib.sha256()
    naive_digest = hashlib.sha256()
    started = time.perf_counter()
    for spec in variants.values():
        for i in picks.tolist():
            user = int(naive_sample[i])
            profile, found = _naive_truth(ratings, ids, user, spec, seed)
            _digest(naive_digest, user, profile, *found)
    out["naive_s"] = time.perf_counter() - started
    for fast in truths.values():
        for i in picks.tolist():
            _digest(
                fast_digest,
                int(sample.users[i]),
                sample.profiles[i],
                fast.movies[i],
                fast.shares[i],
                int(fast.candidates[i]),
                int(fast.drawn[i]),
            )
    out["naive_users"] = len(picks)
    out["naive_same_users"] = bool(np.array_equal(naive_sample, sample.users))
    out["fast_digest"] = fast_digest.hexdigest()
    out["naive_digest"] = naive_digest.hexdigest()
    return out


def _digest(
    digest: Any,
    user: int,
    profile: npt.NDArray[Any],
    movies: npt.NDArray[Any],
    shares: npt.NDArray[Any],
    candidates: int,
    drawn: int,
) -> None:
    digest.update(np.array([user, candidates, drawn], dtype=np.int64).tobytes())
    digest.update(np.asarray(profile, dtype=np.int32).tobytes() + b"|")
    digest.update(np.asarray(movies, dtype=np.int32).tobytes() + b"|")
    digest.update(np.asarray(shares, dtype=np.float64).tobytes() + b"|")


# --- the yardstick: yesterday's implementation and today's on the same users, one process each ---------


def _yardstick(
    index: RatingIndex, sample: Sample, variants: dict[str, SamplingSpec], seed: int, users: int
) -> dict[str, Any]:
    """
    CPU seconds of ``_ScipyTruth`` and of ``derive_ground_truth`` (one process) on the same users,
    and whether their results are equal.
    """
    picks = np.unique(np.linspace(0, len(sample.users) - 1, min(users, len(sample.users))).astype(np.int64))
    part = Sample(users=sample.users[picks], profiles=sample.profiles.take(picks), eligible=sample.eligible)
    old_s = new_s = 0.0
    same = True
    for spec in variants.values():
        at = time.process_time()
        old = _ScipyTruth.of(index, part, spec, seed).run((0, len(picks)))
        old_s += time.process_time() - at
        at = time.process_time()
        new = derive_ground_truth(index, part, spec, seed, workers=1)
        new_s += time.process_time() - at
        same &= [o[2] for o in old] == new.candidates.tolist() and [o[3] for o in old] == new.drawn.tolist()
        same &= all(
            np.array_equal(o[0], m) and np.array_equal(o[1], s)
            for o, m, s in zip(old, new.movies, new.shares, strict=True)
        )
    return {"yard_users": len(picks), "yard_old_s": old_s, "yard_new_s": new_s, "yard_same": bool(same)}


_GATHER_ROWS = 2048
_EXACT_FLOAT32 = 1 << 24
_UserTruth = tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], int, int]


@attrs.frozen(eq=False)
class _ScipyTruth:
    """
    ``llmrec.sampling._TruthJob`` as it was before the compiled kernels (commit b401921), unchanged
    but for the names: a mask over all users per user for the candidates, scipy's row selection and a
    sparse matrix-vector product for the watch counts.
    """

    index: RatingIndex
    sample: Sample
    spec: SamplingSpec
    seed: int
    dense_users: npt.NDArray[np.int64]
    rater_ends: npt.NDArray[np.int64]
    in_pool: npt.NDArray[np.bool_] | None
    ratings: Any
    ones: npt.NDArray[Any]
    weights: npt.NDArray[Any]

    @classmethod
    def of(cls, index: RatingIndex, sample: Sample, spec: SamplingSpec, seed: int) -> _ScipyTruth:
        dense_users = index.dense(sample.users)
        in_pool = None
        if spec.neighbor_pool == "sampled_users":
            in_pool = np.zeros(len(index.user_ids), dtype=bool)
            in_pool[dense_users] = True
        wide = len(index.user_movies) >= np.iinfo(np.int32).max
        starts = index.user_start if wide else index.user_start.astype(np.int32)
        ratings = sp.csr_array(
            (index.user_stars, index.user_movies, starts), shape=(len(index.user_ids), index.n_movies)
        )
        longest = np.sort(np.diff(index.user_start))[::-1]
        most = max(int(longest[:_GATHER_ROWS].sum()), _GATHER_ROWS)
        dtype = np.float32 if min(spec.neighbors, len(index.user_ids)) < _EXACT_FLOAT32 else np.float64
        ones = np.ones(most, dtype=dtype)
        ones.flags.writeable = False
        return cls(
            index=index,
            sample=sample,
            spec=spec,
            seed=seed,
            dense_users=dense_users,
            rater_ends=_prefix_ends(index, spec.neighbor_min_stars * index.star_scale),
            in_pool=in_pool,
            ratings=ratings,
            ones=ones,
            weights=np.empty(most if spec.watched_min_stars > 1 else 0, dtype=dtype),
        )

    def run(self, bounds: tuple[int, int]) -> list[_UserTruth]:
        return [self.truth_of(i) for i in range(*bounds)]

    def truth_of(self, i: int) -> _UserTruth:
        index, spec = self.index, self.spec
        dense_user = int(self.dense_users[i])
        profile = self.sample.profiles[i]
        neighbours = self.candidates(dense_user, profile)
        n_candidates = len(neighbours)
        if n_candidates > spec.neighbors:
            rng = np.random.default_rng([self.seed, int(self.sample.users[i])])
            neighbours = np.sort(rng.choice(neighbours, size=spec.neighbors, replace=False))
        if len(neighbours) == 0:
            return np.zeros(0, dtype=np.int32), np.zeros(0), n_candidates, 0
        counts = self.watch_counts(neighbours)
        excluded = index.movies_of(dense_user) if spec.ground_truth_excludes == "rated" else profile
        counts[excluded] = 0
        share = counts / len(neighbours)
        keep = np.flatnonzero((share >= spec.watch_factor) & (counts > 0))
        top = keep[np.lexsort((keep, -counts[keep]))[: spec.max_ground_truth]]
        return top.astype(np.int32), share[top], n_candidates, len(neighbours)

    def candidates(self, dense_user: int, profile: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
        index = self.index
        movies = profile.astype(np.int64)
        spans = zip(index.movie_start[movies].tolist(), self.rater_ends[movies].tolist(), strict=True)
        raters = np.concatenate(
            [*(index.movie_users[a:b] for a, b in spans), np.zeros(0, dtype=np.int32)]
        ).astype(np.int64)
        everyone = len(index.user_ids)
        if self.spec.neighbor_min_shared == 1:
            keep = np.zeros(everyone, dtype=bool)
            keep[raters] = True
        else:
            keep = np.bincount(raters, minlength=everyone) >= self.spec.neighbor_min_shared
        keep[dense_user] = False
        if self.in_pool is not None:
            keep &= self.in_pool
        return np.flatnonzero(keep)

    def watch_counts(self, neighbours: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        thin = self.spec.watched_min_stars * self.index.star_scale
        total = np.zeros(self.index.n_movies, dtype=self.ones.dtype)
        for a in range(0, len(neighbours), _GATHER_ROWS):
            rows = self.ratings[neighbours[a : a + _GATHER_ROWS]]
            weights = self.ones[: rows.nnz]
            if self.spec.watched_min_stars > 1:
                weights = self.weights[: rows.nnz]
                np.greater_equal(rows.data, thin, out=weights, casting="unsafe")
            by_movie = sp.csc_array((weights, rows.indices, rows.indptr), shape=(len(total), rows.shape[0]))
            total += by_movie @ self.ones[: rows.shape[0]]
            del rows, by_movie
        counts: npt.NDArray[np.int64] = total.astype(np.int64)
        return counts


# --- the naive recipe: plain numpy over the rating columns, one user at a time -----------------------


def _naive_users(ratings: Ratings) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    ids, dense = np.unique(ratings.user, return_inverse=True)
    fives = np.bincount(dense[ratings.stars == 5], minlength=len(ids))
    return ids, fives


def _naive_draw(
    ids: npt.NDArray[Any], fives: npt.NDArray[Any], sampling: SamplingSpec, seed: int
) -> npt.NDArray[Any]:
    eligible = np.flatnonzero(fives >= sampling.min_five_star_ratings)
    if isinstance(sampling.users, int) and len(eligible) > sampling.users:
        rng = np.random.default_rng([seed, 2**32 - 1])
        eligible = np.sort(rng.choice(eligible, size=sampling.users, replace=False))
    return ids[eligible]


def _naive_truth(
    ratings: Ratings, ids: npt.NDArray[Any], user: int, spec: SamplingSpec, seed: int
) -> tuple[npt.NDArray[Any], tuple[npt.NDArray[Any], npt.NDArray[Any], int, int]]:
    mine = ratings.user == user
    movies, stars, days = ratings.movie[mine], ratings.stars[mine], ratings.day[mine]
    order = np.lexsort((movies, -days.astype(np.int32), -stars.astype(np.int32)))
    profile = movies[order[: spec.profile_size]]

    hit = np.isin(ratings.movie, profile) & (ratings.stars >= spec.neighbor_min_stars)
    raters, shared = np.unique(ratings.user[hit], return_counts=True)
    raters = raters[(shared >= spec.neighbor_min_shared) & (raters != user)]
    candidates = np.searchsorted(ids, raters)
    drawn = candidates
    if len(candidates) > spec.neighbors:
        rng = np.random.default_rng([seed, user])
        drawn = np.sort(rng.choice(candidates, size=spec.neighbors, replace=False))
    if len(drawn) == 0:
        return profile, (np.zeros(0, np.int32), np.zeros(0), len(candidates), 0)
    watched = np.isin(ratings.user, ids[drawn])
    seen, counts = np.unique(ratings.movie[watched], return_counts=True)
    share = counts / len(drawn)
    keep = ~np.isin(seen, movies) & (share >= spec.watch_factor)
    seen, counts, share = seen[keep], counts[keep], share[keep]
    top = np.lexsort((seen, -counts))[: spec.max_ground_truth]
    return profile, (seen[top], share[top], len(candidates), len(drawn))


# --- 3. report -------------------------------------------------------------------------------------


def _report(r: dict[str, Any]) -> int:
    gib = 2**30
    memory = max(r["rss_self"], r["pss_peak"])
    fast_per_user = (r["profileData50_s"] + r["profileData60_s"]) / max(1, 2 * r["sampled"])
    fast_cpu_per_user = r["truth_cpu_s"] / max(1, 2 * r["sampled"])
    naive_per_user = r["naive_s"] / max(1, 2 * r["naive_users"])
    same = r["fast_digest"] == r["naive_digest"] and r["naive_same_users"] and r["yard_same"]
    truth_s = r["profileData50_s"] + r["profileData60_s"]
    if r["every"]:
        timed, target = truth_s, TARGET_ALL_SECONDS
        time_label = "both variants"
    else:
        timed, target = r["total_s"], TARGET_SECONDS
        time_label = "total"
    time_ok = timed <= target
    yard_old = r["yard_old_s"] / max(1, 2 * r["yard_users"])
    yard_new = r["yard_new_s"] / max(1, 2 * r["yard_users"])
    memory_ok = memory <= TARGET_BYTES
    rows = [
        ("ratings", f"{r['ratings']:,}", f"{r['users']:,} users, {r['movies'] - 1:,} movies"),
        (
            "generated (not measured)",
            f"{r['generated_s']:.1f} s",
            "reused from --data" if r["reused"] else "",
        ),
        ("build_index", f"{r['build_index_s']:.1f} s", ""),
        ("sample_users", f"{r['sample_users_s']:.1f} s", f"{r['sampled']:,} of {r['eligible']:,} eligible"),
    ]
    for name in VARIANTS:
        detail = (
            f"{r['workers']} workers; mean {r[f'{name}_candidates']:,.0f} candidates, "
            f"{r[f'{name}_drawn']:,.0f} drawn; {r[f'{name}_kept']:,} users keep ground truth"
        )
        rows.append((f"ground truth {name}", f"{r[f'{name}_s']:.1f} s", detail))
    rows += [
        ("both variants", f"{truth_s:.1f} s", f"{truth_s / max(1, 2 * r['sampled']) * 1e3:.2f} ms per user"),
        ("total", f"{r['total_s']:.1f} s", "index, sample, both variants"),
        (
            f"target ({time_label})",
            f"{target:.0f} s",
            "OK" if time_ok else "MISSED",
        ),
        (
            "CPU time, all processes",
            f"{r['cpu_s']:.1f} s",
            f"{r['sys_s']:.1f} s of it system; {r['cpu_s'] / r['total_s']:.2f} cores busy on average",
        ),
        (
            "peak RSS, measuring process",
            f"{r['rss_self'] / gib:.2f} GiB",
            f"{r['loaded_rss'] / gib:.2f} GiB of it the loaded ratings",
        ),
        (
            "peak RSS, largest worker",
            f"{r['rss_worker'] / gib:.2f} GiB",
            "mostly index pages shared with the parent",
        ),
        (
            "peak PSS, all processes",
            f"{r['pss_peak'] / gib:.2f} GiB",
            f"target <= {TARGET_BYTES / gib:.0f} GiB for the larger of this and the process RSS: "
            + ("OK" if memory_ok else "MISSED"),
        ),
        (
            "yesterday's per user, CPU",
            f"{yard_old * 1e3:.2f} ms",
            f"_ScipyTruth, {r['yard_users']:,} users x 2 variants, 1 process",
        ),
        (
            "today's per user, CPU",
            f"{yard_new * 1e3:.2f} ms",
            "derive_ground_truth, the same users, 1 process",
        ),
        (
            "yesterday / today",
            f"{yard_old / yard_new:.1f}x",
            "same results" if r["yard_same"] else "RESULTS DIFFER",
        ),
        (
            "naive recipe per user",
            f"{naive_per_user * 1e3:.0f} ms",
            f"{r['naive_users']} users x 2 variants, 1 process",
        ),
        ("fast per user", f"{fast_per_user * 1e3:.1f} ms", f"wall, {r['workers']} workers"),
        ("fast per user, CPU", f"{fast_cpu_per_user * 1e3:.1f} ms", "CPU time of all processes"),
        (
            "naive / fast",
            f"{naive_per_user / fast_per_user:.0f}x",
            f"{naive_per_user / fast_cpu_per_user:.0f}x per CPU second; "
            f"naive for all users: ~{naive_per_user * 2 * r['sampled'] / 3600:.1f} h",
        ),
        (
            "same ground truth",
            "yes" if same else "NO",
            f"sha256 {r['fast_digest'][:16]} vs {r['naive_digest'][:16]}",
        ),
        ("load average before", f"{r['load_before']:.2f}", f"on {os.cpu_count()} cores"),
    ]
    width = max(len(row[0]) for row in rows)
    for label, value, detail in rows:
        print(f"{label:<{width}}  {value:>12}  {detail}")
    return 0 if (time_ok and memory_ok and same) else 1


if __name__ == "__main__":
    sys.exit(main())
