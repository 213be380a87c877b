"""
Benchmark: the ``knn`` ground truth, vectorised, against the per-user implementation it replaced.

Run it by hand (pytest does not collect ``bench_*.py``)::

    python tests/benchmarks/bench_knn_ground_truth.py --quick          # 1M ratings, under a minute
    python tests/benchmarks/bench_knn_ground_truth.py                  # 10M ratings, a few minutes
    flock /work/notes/bench.lock python tests/benchmarks/bench_knn_ground_truth.py \\
        --ratings 100000000 --data /work/bench-data/synthetic-ratings100000000-seed0   # > 4 GiB

The ratings come from ``generate_synthetic`` with Netflix's shape (17,770 movies, 209 ratings per
user on average, 16 taste groups; users in proportion to the ratings), the same files as
``bench_ground_truth.py`` (``--data DIR`` keeps them, or reuses them when they match). In one
process, after ``build_index`` and ``sample_users`` (the paper's 10,000 users; ``knn_neighbors`` 50,
``max_ground_truth`` 10, every rating votes):

1. ``knn_ground_truth`` for all sampled users, timed (wall and CPU time of the process);
2. the per-user implementation kept in ``tests/reference_knn.py`` on ``--reference-users`` users
   spread over the sample, timed the same way;
3. both results compared bit for bit on those users (movies, shares, neighbour counts);
4. the peak memory that the vectorised function allocates beyond its inputs (``tracemalloc``, which
   sees numpy's buffers), on its first two batches of users, in a separate untimed call.

It prints the table and exits 1 when the results differ or the per-user speed-up is under 10x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from llmrec.data import Ratings
from llmrec.data.synthetic import generate_synthetic
from llmrec.ground_truth import _knn_batch, knn_ground_truth
from llmrec.ragged import Ragged
from llmrec.sampling import GroundTruth, Sample, build_index, sample_users
from llmrec.spec import SamplingSpec, SyntheticSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.reference_knn import knn_ground_truth_reference

TARGET_RATIO = 10.0
NETFLIX_USERS = 480_189
NETFLIX_RATINGS = 100_480_507
NETFLIX_MOVIES = 17_770
MEAN_RATINGS = 209
TASTES = 16
COLUMNS = ("user", "movie", "stars", "day")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ratings", type=int, default=10_000_000, help="about this many ratings")
    parser.add_argument("--quick", action="store_true", help="1M ratings, 2,000 users")
    parser.add_argument("--users", type=int, default=10_000, help="sampled users (the paper's 10,000)")
    parser.add_argument("--reference-users", type=int, default=50, help="users the per-user code runs on")
    parser.add_argument("--seed", type=int, default=0, help="data and sampling seed")
    parser.add_argument("--data", type=Path, help="keep the generated ratings here and reuse them")
    args = parser.parse_args(argv)
    if args.quick:
        args.ratings, args.users = 1_000_000, 2_000

    load_before = os.getloadavg()[0]
    ratings, generated = _ratings(args.data, args.ratings, args.seed)
    index = build_index(ratings)
    del ratings
    spec = SamplingSpec(users=args.users, ground_truth="knn")
    sample = sample_users(index, spec, args.seed)
    r: dict[str, Any] = {
        "ratings": len(index.user_movies),
        "users": len(index.user_ids),
        "movies": index.n_movies - 1,
        "sampled": len(sample.users),
        "generated": generated,
        "load_before": load_before,
        "batch": _knn_batch(len(index.user_ids)),
    }

    wall, cpu = time.perf_counter(), time.process_time()
    _, fast = knn_ground_truth(index, sample, spec)
    r["fast_s"], r["fast_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu

    picks = np.unique(np.linspace(0, len(sample.users) - 1, min(args.reference_users, len(sample.users))))
    picks = picks.astype(np.int64)
    subset = Sample(
        users=sample.users[picks],
        profiles=Ragged.from_rows([sample.profiles[int(i)] for i in picks], np.int32),
        eligible=sample.eligible,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    _, slow = knn_ground_truth_reference(index, subset, spec)
    r["reference_s"], r["reference_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu
    r["reference_users"] = len(picks)
    r["same"] = _same(fast, slow, picks)

    # peak memory beyond the inputs, on the first two batches (a batch's peak repeats in every batch)
    head = attrs.evolve(
        sample,
        users=sample.users[: 2 * r["batch"]],
        profiles=Ragged.from_rows(
            [sample.profiles[i] for i in range(len(sample.users[: 2 * r["batch"]]))], np.int32
        ),
    )
    tracemalloc.start()
    knn_ground_truth(index, head, spec)
    r["fast_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    r["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    r["load_after"] = os.getloadavg()[0]
    r["mean_found"] = float(np.mean(fast.candidates)) if len(fast.candidates) else 0.0
    r["kept"] = sum(len(m) > 0 for m in fast.movies)
    return _report(r)


def _same(fast: GroundTruth, slow: GroundTruth, picks: np.ndarray[Any, Any]) -> bool:
    return all(
        np.array_equal(fast.movies[int(i)], slow.movies[j])
        and np.array_equal(fast.shares[int(i)], slow.shares[j])
        and int(fast.candidates[int(i)]) == int(slow.candidates[j])
        for j, i in enumerate(picks)
    )


def _synthetic_spec(ratings: int) -> SyntheticSpec:
    users = max(100, round(NETFLIX_USERS * ratings / NETFLIX_RATINGS))
    return SyntheticSpec(users=users, movies=NETFLIX_MOVIES, mean_ratings=MEAN_RATINGS, tastes=TASTES)


def _ratings(folder: Path | None, ratings: int, seed: int) -> tuple[Ratings, bool]:
    """
    The synthetic ratings, from ``folder`` when it holds these (bench_ground_truth.py's layout).
    """
    spec = _synthetic_spec(ratings)
    want = {"spec": str(spec), "seed": seed}
    meta = folder / "meta.json" if folder is not None else None
    if meta is not None and meta.is_file() and json.loads(meta.read_text()) == want:
        return Ratings(*(np.load(meta.parent / f"{name}.npy") for name in COLUMNS)), False
    print(f"generating about {ratings:,} ratings ...", file=sys.stderr, flush=True)
    data = generate_synthetic(spec, seed).ratings
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in COLUMNS:
            np.save(folder / f"{name}.npy", getattr(data, name))
        (folder / "meta.json").write_text(json.dumps(want))
    return data, True


def _report(r: dict[str, Any]) -> int:
    mib = 2**20
    fast = r["fast_s"] / max(1, r["sampled"])
    fast_cpu = r["fast_cpu_s"] / max(1, r["sampled"])
    slow = r["reference_s"] / max(1, r["reference_users"])
    slow_cpu = r["reference_cpu_s"] / max(1, r["reference_users"])
    ratio = slow / fast
    ok = ratio >= TARGET_RATIO and r["same"]
    rows = [
        (
            "ratings",
            f"{r['ratings']:,}",
            f"{r['users']:,} users, {r['movies']:,} movies; "
            + ("generated" if r["generated"] else "read from --data"),
        ),
        (
            "sampled users",
            f"{r['sampled']:,}",
            f"knn_neighbors 50, max_ground_truth 10; batches of {r['batch']}",
        ),
        (
            "per-user reference",
            f"{slow * 1e3:.2f} ms",
            f"{slow_cpu * 1e3:.2f} ms CPU; {r['reference_users']} users",
        ),
        ("vectorised", f"{fast * 1e3:.2f} ms", f"{fast_cpu * 1e3:.2f} ms CPU; all {r['sampled']:,} users"),
        (
            "speed-up per user",
            f"{ratio:.1f}x",
            f"{slow_cpu / fast_cpu:.1f}x per CPU second; target >= {TARGET_RATIO:.0f}x: "
            + ("OK" if ratio >= TARGET_RATIO else "MISSED"),
        ),
        ("same results", "yes" if r["same"] else "NO", "movies, shares, neighbour counts, bit for bit"),
        ("peak allocated, vectorised", f"{r['fast_peak'] / mib:,.0f} MiB", "beyond its inputs (tracemalloc)"),
        ("peak RSS, process", f"{r['rss'] / mib:,.0f} MiB", "ratings, index and both runs"),
        ("neighbours found", f"{r['mean_found']:.1f}", f"mean; {r['kept']:,} users keep ground truth"),
        ("load average", f"{r['load_before']:.2f}", f"-> {r['load_after']:.2f} on {os.cpu_count()} cores"),
    ]
    width = max(len(row[0]) for row in rows)
    for label, value, detail in rows:
        print(f"{label:<{width}}  {value:>10}  {detail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
