"""
Benchmark: counting the tokens of 10,000 fine-tune examples built from our prompts.

Run it by hand (pytest does not collect ``bench_*.py``)::

    python tests/benchmarks/bench_tokens.py                 # 10,000 examples, a few seconds
    python tests/benchmarks/bench_tokens.py --examples 50000

It draws the demo's synthetic catalogue (``specs/demo.toml`` sizes), builds examples with
``llmrec.prompts.build_example`` (10 profile titles, 10 answer titles, each example's own draw), then
times, in this one process: the first count (which loads the embedded encodings), counting every
example with an empty count cache, and counting them again. It prints the tokens per example and
exits 1 when counting the examples takes longer than 2 s per 10,000.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import llmrec.tokens as tokens
from llmrec.data.synthetic import generate_synthetic
from llmrec.prompts import build_example
from llmrec.spec import PromptSpec, SyntheticSpec

TARGET_SECONDS_PER_10K = 2.0


def main() -> int:
    """
    Build the examples, time the counts, print a small table; 1 when the target is missed.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    movies = generate_synthetic(SyntheticSpec(users=3000, movies=400, mean_ratings=60, tastes=8), 7).movies
    titles = [movies.display(i) for i in range(1, 401)]
    rng = random.Random(args.seed)
    spec = PromptSpec()
    examples = []
    for _ in range(args.examples):
        picks = rng.sample(titles, 20)
        examples.append(build_example(picks[:10], picks[10:], spec))

    start = time.perf_counter()
    tokens.count_text("load", "o200k_base")
    load = time.perf_counter() - start

    tokens._count.cache_clear()
    start = time.perf_counter()
    counts = [tokens.count_example(e) for e in examples]
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = [tokens.count_example(e) for e in examples]
    warm = time.perf_counter() - start
    assert counts == again

    per_10k = cold * 10_000 / args.examples
    print(f"examples            {args.examples:,}")
    print(
        f"tokens per example  mean {statistics.mean(counts):.1f}, median {statistics.median(counts)}, "
        f"{min(counts)}-{max(counts)}"
    )
    print(f"first count (load)  {load:.2f} s")
    print(f"count, cold cache   {cold:.2f} s ({per_10k:.2f} s per 10,000; target {TARGET_SECONDS_PER_10K} s)")
    print(f"count again         {warm:.2f} s")
    return 0 if per_10k <= TARGET_SECONDS_PER_10K else 1


if __name__ == "__main__":
    sys.exit(main())
