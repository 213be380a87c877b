"""
Paired statistics: bootstrap intervals, the sign-flip test, Holm, and seeds derived from labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.stats import (
    Interval,
    bootstrap_ci,
    bootstrap_column_means,
    bootstrap_mean_ci,
    compare_paired,
    derive_seed,
    holm,
    percentile_interval,
    sign_flip_pvalue,
    sign_flip_pvalues,
)

P_AT_3 = (0.0, 1 / 3, 2 / 3, 1.0)


def _p_at_3(rng: np.random.Generator, n: int, weights: tuple[float, ...]) -> np.ndarray:
    return rng.choice(P_AT_3, size=n, p=weights)


def test_identical_inputs_have_no_difference(rng: np.random.Generator) -> None:
    """Identical per-user values give a zero difference, a zero-width interval and p = 1."""
    values = _p_at_3(rng, 200, (0.4, 0.3, 0.2, 0.1))

    assert bootstrap_ci(values, values, seed=1) == (0.0, 0.0, 0.0)
    assert sign_flip_pvalue(values, values, seed=1) == 1.0


def test_large_shift_is_detected(rng: np.random.Generator) -> None:
    """A constant shift of 0.5 gives p = 1/(permutations + 1) and an interval around 0.5."""
    b = rng.uniform(0, 0.5, size=60)
    a = b + 0.5

    diff, low, high = bootstrap_ci(a, b, resamples=2_000, seed=2)
    p = sign_flip_pvalue(a, b, permutations=2_000, seed=2)

    assert diff == pytest.approx(0.5)
    assert low == pytest.approx(0.5)
    assert high == pytest.approx(0.5)
    assert p == pytest.approx(1 / 2_001)


def test_noisy_improvement_excludes_zero(rng: np.random.Generator) -> None:
    """A clear improvement on lumpy P@3 values gives an interval above 0 and a small p."""
    b = _p_at_3(rng, 300, (0.5, 0.3, 0.15, 0.05))
    a = np.minimum(1.0, b + rng.choice([0.0, 1 / 3], size=300, p=(0.6, 0.4)))

    diff, low, high = bootstrap_ci(a, b, resamples=2_000, seed=3)

    assert 0 < low < diff < high
    assert sign_flip_pvalue(a, b, permutations=2_000, seed=3) < 0.01


def test_pvalue_is_symmetric_and_in_range(rng: np.random.Generator) -> None:
    """Swapping A and B (a two-sided test) gives the same p with the same seed; p lies in (0, 1]."""
    a = _p_at_3(rng, 50, (0.4, 0.3, 0.2, 0.1))
    b = _p_at_3(rng, 50, (0.4, 0.3, 0.2, 0.1))

    p = sign_flip_pvalue(a, b, permutations=1_000, seed=4)

    assert p == sign_flip_pvalue(b, a, permutations=1_000, seed=4)
    assert 1 / 1_001 <= p <= 1


def test_ties_from_rounding_count_as_ties() -> None:
    """Differences that cancel exactly (thirds in any order) give p = 1, not a rounding artefact."""
    a = np.array([1 / 3, 0.0, 2 / 3, 0.0, 1.0, 1 / 3])
    b = np.array([0.0, 1 / 3, 0.0, 2 / 3, 1 / 3, 1.0])

    assert sign_flip_pvalue(a, b, permutations=500, seed=5) == 1.0


def test_null_pvalues_are_not_small(rng: np.random.Generator) -> None:
    """Under the null (A and B drawn alike), few of 40 tests reject at 5 %."""
    pvalues = [
        sign_flip_pvalue(
            _p_at_3(rng, 40, (0.4, 0.3, 0.2, 0.1)),
            _p_at_3(rng, 40, (0.4, 0.3, 0.2, 0.1)),
            permutations=500,
            seed=i,
        )
        for i in range(40)
    ]

    assert sum(p < 0.05 for p in pvalues) <= 6


def test_intervals_shrink_with_more_users(rng: np.random.Generator) -> None:
    """An interval from 16 times the users is about 4 times narrower."""
    small = _p_at_3(rng, 50, (0.4, 0.3, 0.2, 0.1))
    large = _p_at_3(rng, 800, (0.4, 0.3, 0.2, 0.1))

    _, lo_s, hi_s = bootstrap_mean_ci(small, resamples=2_000, seed=6)
    _, lo_l, hi_l = bootstrap_mean_ci(large, resamples=2_000, seed=6)

    assert (hi_l - lo_l) < (hi_s - lo_s) / 2.5


def test_mean_interval_brackets_the_mean(rng: np.random.Generator) -> None:
    """The one-sample interval holds the sample mean and lies within the values' range."""
    values = _p_at_3(rng, 100, (0.4, 0.3, 0.2, 0.1))

    mean, low, high = bootstrap_mean_ci(values, resamples=1_000, level=0.9, seed=7)

    assert mean == pytest.approx(values.mean())
    assert 0 <= low <= mean <= high <= 1


def test_same_seed_same_result(rng: np.random.Generator) -> None:
    """The same seed (an int or a Generator seeded alike) reproduces every number; another does not."""
    a = _p_at_3(rng, 80, (0.4, 0.3, 0.2, 0.1))
    b = _p_at_3(rng, 80, (0.3, 0.3, 0.2, 0.2))

    first = bootstrap_ci(a, b, resamples=1_000, seed=8)

    assert first == bootstrap_ci(a, b, resamples=1_000, seed=8)
    assert first == bootstrap_ci(a, b, resamples=1_000, seed=np.random.default_rng(8))
    assert first != bootstrap_ci(a, b, resamples=1_000, seed=9)
    assert sign_flip_pvalue(a, b, permutations=999, seed=8) == sign_flip_pvalue(
        a, b, permutations=999, seed=8
    )


def test_result_does_not_depend_on_chunking(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawing in smaller chunks gives the same numbers (the stream is consumed in the same order)."""
    import llmrec.stats as stats

    a = _p_at_3(rng, 30, (0.4, 0.3, 0.2, 0.1))
    b = _p_at_3(rng, 30, (0.3, 0.3, 0.2, 0.2))
    whole = (bootstrap_ci(a, b, resamples=500, seed=10), sign_flip_pvalue(a, b, permutations=500, seed=10))
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 30 * 7)

    assert (
        bootstrap_ci(a, b, resamples=500, seed=10),
        sign_flip_pvalue(a, b, permutations=500, seed=10),
    ) == whole


def test_holm_hand_worked_example() -> None:
    """
    p = (0.01, 0.04, 0.03, 0.005): sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 is 0.02, 0.03, 0.06,
    0.04; the running maximum makes the last 0.06; back in input order (0.03, 0.06, 0.06, 0.02).
    """
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_handles_edges() -> None:
    """Adjusted p-values never exceed 1; one p-value is unchanged; an empty family stays empty."""
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]
    assert holm([0.2]).tolist() == [0.2]
    assert holm([]).tolist() == []


@settings(max_examples=60)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_is_monotone_and_dominates(pvalues: list[float]) -> None:
    """Adjusted values are >= the raw ones, <= 1, and keep the raw values' order."""
    adjusted = holm(pvalues)
    raw = np.array(pvalues)
    order = np.argsort(raw, kind="stable")

    assert np.all(adjusted >= raw)
    assert np.all(adjusted <= 1)
    assert np.all(np.diff(adjusted[order]) >= 0)


def test_holm_matches_statsmodels() -> None:
    """Our Holm agrees with statsmodels' multipletests where statsmodels is installed."""
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    pvalues = np.array([0.001, 0.2, 0.03, 0.03, 0.5, 0.011])

    expected = multitest.multipletests(pvalues, method="holm")[1]

    assert holm(pvalues) == pytest.approx(expected)


def test_derive_seed_is_stable_and_label_specific() -> None:
    """A label's seed is fixed (a regression value) and differs between labels and experiment seeds."""
    seed = derive_seed(42, "default/finetuned-vs-baseline/precision@3")

    assert seed == derive_seed(42, "default/finetuned-vs-baseline/precision@3")
    assert seed != derive_seed(42, "default/finetuned-vs-baseline/recall@3")
    assert seed != derive_seed(43, "default/finetuned-vs-baseline/precision@3")
    assert 0 <= seed < 2**64


def test_compare_paired_bundles_interval_and_pvalue(rng: np.random.Generator) -> None:
    """compare_paired reports both means, the bootstrap interval and p from label-derived seeds."""
    a = _p_at_3(rng, 40, (0.2, 0.3, 0.3, 0.2))
    b = _p_at_3(rng, 40, (0.4, 0.3, 0.2, 0.1))

    out = compare_paired(a, b, seed=42, label="default/x/precision@3", resamples=500, permutations=500)

    assert out.users == 40
    assert out.mean_a - out.mean_b == pytest.approx(out.difference.estimate)
    assert out.difference == bootstrap_ci(
        a, b, resamples=500, seed=derive_seed(42, "default/x/precision@3/bootstrap")
    )
    assert out.p_value == sign_flip_pvalue(
        a, b, permutations=500, seed=derive_seed(42, "default/x/precision@3/sign-flip")
    )
    assert isinstance(out.difference, Interval)


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([], [], "empty"),
        ([0.1, 0.2], [0.1], "differ in length"),
        ([0.1, float("nan")], [0.1, 0.2], "NaN"),
        ([[0.1]], [[0.1]], "1-d"),
    ],
)
def test_bad_values_raise(a: list[float], b: list[float], match: str) -> None:
    """Empty, misaligned, NaN or 2-d inputs raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(a, b, seed=0)
    with pytest.raises(ValueError, match=match):
        sign_flip_pvalue(a, b, seed=0)


def test_bad_settings_raise() -> None:
    """Resamples, permutations and level out of range, or p-values outside [0, 1], raise ValueError."""
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_mean_ci([0.1], resamples=0, seed=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean_ci([0.1], level=1.0, seed=0)
    with pytest.raises(ValueError, match="permutations"):
        sign_flip_pvalue([0.1], [0.2], permutations=0, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, float("nan")])


def test_shared_draws_match_the_one_column_functions(rng: np.random.Generator) -> None:
    """
    Every column of the shared-draw functions gives what the one-column function gives with the same
    seed (same draws), and a difference of two columns' resampled means is the paired bootstrap.
    """
    n = 3_000  # more than one chunk of draws at 2,000 resamples
    table = np.column_stack([_p_at_3(rng, n, w) for w in ((0.4, 0.3, 0.2, 0.1), (0.1, 0.2, 0.3, 0.4))])
    means = bootstrap_column_means(table, resamples=2_000, seed=11)
    assert means.shape == (2_000, 2)
    for j in range(2):
        alone = bootstrap_mean_ci(table[:, j], resamples=2_000, seed=11)
        shared = percentile_interval(float(table[:, j].mean()), means[:, j])
        assert shared == pytest.approx(alone, abs=1e-12)
    paired = bootstrap_ci(table[:, 1], table[:, 0], resamples=2_000, seed=11)
    difference = float((table[:, 1] - table[:, 0]).mean())
    assert percentile_interval(difference, means[:, 1] - means[:, 0]) == pytest.approx(paired, abs=1e-12)
    assert paired.low > 0  # the second column is clearly better
    diffs = np.column_stack([table[:, 1] - table[:, 0], np.zeros(n), table[:, 0] - table[:, 0][::-1]])
    pvalues = sign_flip_pvalues(diffs, permutations=1_000, seed=12)
    alone_p = [sign_flip_pvalue(diffs[:, j], np.zeros(n), permutations=1_000, seed=12) for j in range(3)]
    assert pvalues.tolist() == alone_p
    assert pvalues[0] == pytest.approx(1 / 1_001)
    assert pvalues[1] == 1.0


def test_shared_draws_refuse_bad_input() -> None:
    """The shared-draw functions want a 2-d users x columns table of finite values."""
    with pytest.raises(ValueError, match="2-d"):
        bootstrap_column_means([0.1, 0.2], seed=0)
    with pytest.raises(ValueError, match="no users"):
        sign_flip_pvalues(np.zeros((0, 2)), seed=0)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_column_means([[0.1], [float("nan")]], seed=0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_column_means([[0.1]], resamples=0, seed=0)
    with pytest.raises(ValueError, match="level"):
        percentile_interval(0.5, [0.4, 0.6], level=0.0)
