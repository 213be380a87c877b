"""
Measure what the classic baselines gain from ratings dated after the cut (docs/sampling.md, "Which
protocol leaks what").

Run it as a script; pytest does not collect it (its name does not start with ``test_``)::

    python tests/benchmarks/bench_temporal_leak.py [--movielens FOLDER] [--test-share 0.5]

On the demo's synthetic data (``specs/demo.toml``, seed 7), or a MovieLens folder, it samples as the
spec says (test share raised to ``--test-share`` for more test users) and, for ``ground_truth =
"future"`` and ``"future_global"``, fits MostPopular, ItemKNN and EASE as the baselines stage does
and scores them on the test users; for the global rule a second time with the ratings after the cut
put back in the fitting data (what the per-user rule allows). The gap between the two rows is what
the ratings after the cut are worth to the baselines. One seed, no intervals: indicative only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs
import numpy as np

from llmrec.data import Dataset, day_to_date
from llmrec.data.movielens import read_movielens
from llmrec.data.synthetic import generate_synthetic
from llmrec.executor import SerialExecutor
from llmrec.metrics import score_list
from llmrec.sampling import build_index
from llmrec.spec import parse_spec
from llmrec.stages import baselines as baselines_stage
from llmrec.stages import ground_truth as truth_stage
from llmrec.stages import sample as sample_stage
from llmrec.stages.evaluate import fit_counts, truth_popularity
from llmrec.stages.sample import SPLITS
from llmrec.stages.training_files import TrainingFiles

DEMO = Path(__file__).resolve().parents[2] / "specs" / "demo.toml"
METRICS = ("precision@5", "map")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--movielens", help="a MovieLens folder (default: the demo's synthetic data)")
    parser.add_argument("--test-share", type=float, default=0.5)
    args = parser.parse_args()
    spec = parse_spec(DEMO.read_text(encoding="utf-8"))
    rest = 1.0 - args.test_share
    spec = attrs.evolve(
        spec, split=attrs.evolve(spec.split, train=rest * 0.6, validation=rest * 0.4, test=args.test_share)
    )
    dataset: Dataset = (
        read_movielens(args.movielens)
        if args.movielens
        else generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    )
    index = build_index(dataset.ratings)
    seed = spec.experiment.seed
    evaluation = attrs.evolve(spec.evaluation, baselines=("popular", "item_knn", "ease"))
    print(f"{len(dataset.ratings):,} ratings, {len(index.user_ids):,} users")
    for rule in ("future", "future_global"):
        sampling = attrs.evolve(spec.sampling, ground_truth=rule)
        sampled = sample_stage.compute(index, sampling, spec.split, seed)
        truth = truth_stage.compute(index, sampled.sample, sampling, seed, rule, SerialExecutor())
        members = {
            s: tuple(int(i) for i in np.flatnonzero(truth.kept & (sampled.splits == c)))
            for c, s in enumerate(SPLITS)
        }
        files = TrainingFiles(members=members, train=b"", validation=b"")
        cut = "" if truth.cut_day is None else f", cut {day_to_date(truth.cut_day)}"
        print(
            f"{rule}{cut}: {sampled.sample.eligible:,} eligible, {int(truth.kept.sum()):,} with ground "
            f"truth, {len(members['test']):,} test users"
        )
        fits = [("as the protocol says", truth.cut_day)]
        if truth.cut_day is not None:
            fits.append(("with the ratings after the cut", None))
        for label, cut_day in fits:
            fitted = attrs.evolve(truth, cut_day=cut_day)
            lists = baselines_stage.compute(
                evaluation, 10, seed, lambda: dataset, sampled, fitted, files, {}, lambda k, n: None
            )
            test_users = sampled.sample.users[sampled.splits == 2]
            source, counts = fit_counts(
                "ratings_without_test_users",
                dataset.ratings,
                test_users=test_users,
                train_profiles=[],
                train_truths=[],
                cut_day=cut_day,
            )
            truths = [truth.truth.movies[i] for i in members["test"]]
            pop = truth_popularity(counts, dataset.movies.ids, truths, source=source)
            cells = []
            for kind, ranked in zip(lists.kinds, lists.lists, strict=True):
                rows = [
                    score_list([int(m) for m in ranked[r]], frozenset(int(m) for m in t), METRICS)
                    for r, t in enumerate(truths)
                ]
                means = np.array(rows, dtype=np.float64).reshape(len(rows), len(METRICS)).mean(axis=0)
                cells.append(f"{kind} P@5 {means[0]:.4f} MAP {means[1]:.4f}")
            print(
                f"  fitted {label}: ground truth in top 20 {pop.top20_share:.0%}, top 100 "
                f"{pop.top100_share:.0%}; " + "; ".join(cells)
            )


if __name__ == "__main__":
    main()
