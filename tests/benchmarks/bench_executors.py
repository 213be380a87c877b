"""
The neighbour ground truth on each executor: serial, the forked process pool and a local Ray
instance, on the same ratings; checks that all three give the same ground truth and prints the times,
Ray's start-up and the size of what Ray puts in its object store (once per variant).

    python tests/benchmarks/bench_executors.py --data /work/bench-data/synthetic-ratings10000000-seed0

``--data`` is a folder of user/movie/stars/day .npy files (``bench_ground_truth.py`` writes them).
Needs the ray extra. Not part of pytest.
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from pathlib import Path

import numpy as np

from llmrec.data import Ratings
from llmrec.executor import Executor, ProcessExecutor, SerialExecutor
from llmrec.ray_executor import RayExecutor
from llmrec.sampling import GroundTruth, _TruthJob, build_index, derive_ground_truth, sample_users
from llmrec.spec import SamplingSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--users", type=int, default=1000, help="sampled users")
    parser.add_argument("--neighbors", type=int, default=10000)
    args = parser.parse_args()
    folder = Path(args.data)
    ratings = Ratings(*(np.load(folder / f"{name}.npy") for name in ("user", "movie", "stars", "day")))
    index = build_index(ratings)
    spec = SamplingSpec(users=args.users, neighbors=args.neighbors, neighbor_min_stars=5, watch_factor=0.5)
    sample = sample_users(index, spec, 0)
    job = _TruthJob.of(index, sample, spec, 0)
    buffers: list[pickle.PickleBuffer] = []
    inline = len(pickle.dumps(job, protocol=5, buffer_callback=buffers.append))
    put_bytes = inline + sum(b.raw().nbytes for b in buffers)
    print(f"{len(ratings):,} ratings, {len(index.user_ids):,} users; {len(sample.users):,} sampled")
    print(f"what ray.put stores per variant: {put_bytes / 2**20:,.0f} MiB ({len(buffers)} zero-copy buffers)")

    started = time.perf_counter()
    ray = RayExecutor(num_cpus=min(2, os.cpu_count() or 1))
    cpus = ray.parallelism
    print(f"ray: local instance with {cpus} CPUs started in {time.perf_counter() - started:.1f} s")
    import ray as ray_module

    started = time.perf_counter()
    ref = ray_module.put(job)
    print(f"ray.put of the shared value alone: {time.perf_counter() - started:.2f} s")
    del ref
    executors: list[Executor] = [SerialExecutor(), ProcessExecutor(2), ray]
    results: dict[str, GroundTruth] = {}
    for executor in executors:
        started = time.perf_counter()
        results[executor.name] = derive_ground_truth(index, sample, spec, 0, executor=executor)
        seconds = time.perf_counter() - started
        print(f"{executor.name:>10}: {seconds:6.1f} s, {1000 * seconds / len(sample.users):.1f} ms per user")
    ray.close()
    first = next(iter(results.values()))
    same = all(
        np.array_equal(t.movies.values, first.movies.values)
        and np.array_equal(t.movies.offsets, first.movies.offsets)
        and np.array_equal(t.drawn, first.drawn)
        for t in results.values()
    )
    print(f"identical ground truth on every executor: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
