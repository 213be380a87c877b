"""
Per-user paired comparisons: bootstrap confidence intervals, a sign-flip permutation test, Holm.

Two models scored on the same test users give two aligned arrays of per-user values (one metric,
say P@3); the question is whether their means differ. The functions here answer it without a
distribution assumption, which matters because per-user values are few-valued and lumpy (P@3 is one
of 0, 1/3, 2/3, 1):

- ``bootstrap_ci``: the percentile bootstrap interval of the mean paired difference;
- ``bootstrap_mean_ci``: the same for one model's mean (error bars);
- ``sign_flip_pvalue``: the two-sided paired permutation test (random signs on the differences);
- ``holm``: Holm-Bonferroni adjusted p-values across the rows of a table;
- ``compare_paired``: all of it for one comparison, with seeds derived from a label.

Randomness: every function takes ``seed``, an int or a ``numpy.random.Generator``. An int ``s``
means ``numpy.random.default_rng(s)``; ``derive_seed(experiment_seed, label)`` turns the experiment
seed and a stable label (variant, comparison, metric) into such an int, so every number in a report
is reproducible and no comparison's draw depends on which others were made. Resamples are drawn in
chunks whose size depends only on the number of users, so a result depends only on the values, the
count of resamples and the seed. Nothing here reads files, the clock or global random state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "Interval",
    "PairedComparison",
    "bootstrap_ci",
    "bootstrap_column_means",
    "bootstrap_mean_ci",
    "compare_paired",
    "derive_seed",
    "holm",
    "percentile_interval",
    "sign_flip_pvalue",
    "sign_flip_pvalues",
]

FloatArray = npt.NDArray[np.float64]
Seed = int | np.random.Generator

RESAMPLES = 10_000
"""Default bootstrap resamples."""
PERMUTATIONS = 10_000
"""Default sign-flip permutations."""
LEVEL = 0.95
"""Default confidence level."""

_CHUNK_CELLS = 1 << 20
"""Draw at most about this many random numbers at once (8 MiB of int64), whatever the user count."""


class Interval(NamedTuple):
    """
    A point estimate with its confidence interval; unpacks as ``(estimate, low, high)``.
    """

    estimate: float
    low: float
    high: float


def derive_seed(seed: int, label: str) -> int:
    """
    A seed for one comparison, from the experiment seed and a stable label.

    The seed is the first 8 bytes (big-endian) of BLAKE2b over ``f"{seed}:{label}"``; a label such as
    ``"default/finetuned-vs-baseline/precision@3"`` names what is compared, so adding or dropping
    other comparisons never changes this one's draw.

    Args:
        seed: the experiment seed.
        label: what the draw is for.

    Returns:
        A non-negative integer below 2**64.
    """
    digest = hashlib.blake2b(f"{seed}:{label}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _generator(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _values(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        msg = f"{name} must be 1-d, got shape {arr.shape}"
        raise ValueError(msg)
    if len(arr) == 0:
        msg = f"{name} is empty"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{name} holds NaN or infinite values"
        raise ValueError(msg)
    return arr


def _differences(values_a: npt.ArrayLike, values_b: npt.ArrayLike) -> FloatArray:
    a = _values(values_a, "values_a")
    b = _values(values_b, "values_b")
    if len(a) != len(b):
        msg = f"values_a and values_b differ in length ({len(a)} != {len(b)}); pairs must be aligned"
        raise ValueError(msg)
    return a - b


def _check_count(count: int, name: str) -> None:
    if count < 1:
        msg = f"{name} must be >= 1, got {count}"
        raise ValueError(msg)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        msg = f"level must be in (0, 1), got {level}"
        raise ValueError(msg)


def _chunks(total: int, n: int) -> list[int]:
    size = max(1, _CHUNK_CELLS // n)
    return [min(size, total - start) for start in range(0, total, size)]


def _bootstrap(values: FloatArray, resamples: int, level: float, seed: Seed) -> Interval:
    _check_count(resamples, "resamples")
    _check_level(level)
    rng = _generator(seed)
    n = len(values)
    means = np.empty(resamples, dtype=np.float64)
    done = 0
    for size in _chunks(resamples, n):
        index = rng.integers(0, n, size=(size, n))
        means[done : done + size] = values[index].mean(axis=1)
        done += size
    alpha = 1 - level
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    estimate = float(values.mean())
    # rounding in the resample means can put an all-equal sample's bounds a hair off its mean
    return Interval(estimate, min(float(low), estimate), max(float(high), estimate))


def _columns(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        msg = f"{name} must be 2-d (users x columns), got shape {arr.shape}"
        raise ValueError(msg)
    if arr.shape[0] == 0:
        msg = f"{name} has no users"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{name} holds NaN or infinite values"
        raise ValueError(msg)
    return arr


def bootstrap_column_means(values: npt.ArrayLike, *, resamples: int = RESAMPLES, seed: Seed) -> FloatArray:
    """
    Each column's mean over ``resamples`` bootstrap resamples of the rows, every column resampled with
    the same draws.

    The rows are users and the columns anything measured on them (several models' metrics): one
    resample of n users with replacement serves every column, so the difference of two columns'
    resampled means is the paired bootstrap of their difference (``bootstrap_ci``), and a table of
    models x metrics costs one draw instead of one per cell. The draws are those of
    ``bootstrap_mean_ci`` with the same seed (the same chunks of ``integers(0, n)``); each resample
    is counted into per-user weights and multiplied with the columns, so the cost is the draw plus
    one matrix product, whatever the number of columns.

    Args:
        values: a users x columns array of finite values.
        resamples: bootstrap resamples.
        seed: an int for ``numpy.random.default_rng`` (see ``derive_seed``) or a Generator.

    Returns:
        A resamples x columns array of resampled means.

    Raises:
        ValueError: for values that are not 2-d, have no rows or are not finite, or resamples < 1.
    """
    table = _columns(values, "values")
    _check_count(resamples, "resamples")
    rng = _generator(seed)
    n = table.shape[0]
    out = np.empty((resamples, table.shape[1]), dtype=np.float64)
    done = 0
    for size in _chunks(resamples, n):
        index = rng.integers(0, n, size=(size, n))
        index += np.arange(0, size * n, n, dtype=np.int64)[:, None]
        weights = np.bincount(index.reshape(-1), minlength=size * n).reshape(size, n)
        out[done : done + size] = (weights @ table) / n
        done += size
    return out


def percentile_interval(estimate: float, resampled: npt.ArrayLike, level: float = LEVEL) -> Interval:
    """
    The percentile bootstrap interval around ``estimate`` from resampled estimates (one column of
    ``bootstrap_column_means``, or a difference of two), as ``bootstrap_mean_ci`` reports it.

    Raises:
        ValueError: for a level outside (0, 1).
    """
    _check_level(level)
    alpha = 1 - level
    low, high = np.quantile(np.asarray(resampled, dtype=np.float64), [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, min(float(low), estimate), max(float(high), estimate))


def sign_flip_pvalues(
    differences: npt.ArrayLike, *, permutations: int = PERMUTATIONS, seed: Seed
) -> FloatArray:
    """
    ``sign_flip_pvalue`` for every column of a users x columns array of paired differences, every
    column tested with the same random sign vectors (the draws of ``sign_flip_pvalue`` with the same
    seed), so that a table of comparisons x metrics costs one draw and one matrix product.

    Args:
        differences: a users x columns array of finite differences a_i - b_i.
        permutations: random sign vectors drawn.
        seed: an int for ``numpy.random.default_rng`` (see ``derive_seed``) or a Generator.

    Returns:
        Each column's p-value, in (0, 1].

    Raises:
        ValueError: for differences that are not 2-d, have no rows or are not finite, or
            permutations < 1.
    """
    diffs = _columns(differences, "differences")
    _check_count(permutations, "permutations")
    rng = _generator(seed)
    n = diffs.shape[0]
    observed = np.abs(diffs.sum(axis=0))
    threshold = observed - 1e-9 * np.abs(diffs).sum(axis=0)
    count = np.zeros(diffs.shape[1], dtype=np.int64)
    for size in _chunks(permutations, n):
        signs = np.where(rng.random((size, n)) < 0.5, -1.0, 1.0)
        count += np.count_nonzero(np.abs(signs @ diffs) >= threshold, axis=0)
    pvalues: FloatArray = (count + 1) / (permutations + 1)
    return pvalues


def bootstrap_ci(
    values_a: npt.ArrayLike,
    values_b: npt.ArrayLike,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: Seed,
) -> Interval:
    """
    The mean paired difference mean(a - b) and its percentile bootstrap interval.

    Users are resampled with replacement (``resamples`` times, n of n each time), keeping each user's
    pair together; the interval is the (1 - level)/2 and (1 + level)/2 quantiles (numpy's default
    linear interpolation) of the resampled mean differences.

    Args:
        values_a: per-user values of model A.
        values_b: per-user values of model B, aligned with ``values_a`` (same users, same order).
        resamples: bootstrap resamples.
        level: confidence level.
        seed: an int for ``numpy.random.default_rng`` (see ``derive_seed``) or a Generator.

    Returns:
        ``(mean_diff, low, high)``; ``low <= mean_diff <= high``.

    Raises:
        ValueError: for empty, misaligned, non-finite or non-1-d values, resamples < 1 or a level
            outside (0, 1).
    """
    return _bootstrap(_differences(values_a, values_b), resamples, level, seed)


def bootstrap_mean_ci(
    values: npt.ArrayLike, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: Seed
) -> Interval:
    """
    One model's mean and its percentile bootstrap interval (error bars on a single mean).

    Args:
        values: per-user values.
        resamples: bootstrap resamples.
        level: confidence level.
        seed: an int for ``numpy.random.default_rng`` (see ``derive_seed``) or a Generator.

    Returns:
        ``(mean, low, high)``; ``low <= mean <= high``.

    Raises:
        ValueError: for empty, non-finite or non-1-d values, resamples < 1 or a level outside (0, 1).
    """
    return _bootstrap(_values(values, "values"), resamples, level, seed)


def sign_flip_pvalue(
    values_a: npt.ArrayLike, values_b: npt.ArrayLike, *, permutations: int = PERMUTATIONS, seed: Seed
) -> float:
    """
    Two-sided paired sign-flip permutation test of "A and B have the same mean".

    Under the null each difference d_i = a_i - b_i is as likely to be -d_i, so with random signs
    s ∈ {-1, +1}^n the statistic T = |Σ s_i d_i| is compared with the observed |Σ d_i|:

        p = (1 + #{draws with T >= observed}) / (1 + permutations)

    (the +1 counts the observed labelling, so p is never 0 and the test is valid with Monte Carlo
    draws). Sums equal up to floating-point rounding (a relative 1e-9 of Σ|d_i|) count as ties, so
    identical inputs give p = 1 and lumpy values such as P@3 are not split by rounding.

    Args:
        values_a: per-user values of model A.
        values_b: per-user values of model B, aligned with ``values_a``.
        permutations: random sign vectors drawn.
        seed: an int for ``numpy.random.default_rng`` (see ``derive_seed``) or a Generator.

    Returns:
        The p-value, in (0, 1].

    Raises:
        ValueError: for empty, misaligned, non-finite or non-1-d values, or permutations < 1.
    """
    diffs = _differences(values_a, values_b)
    _check_count(permutations, "permutations")
    rng = _generator(seed)
    observed = abs(float(diffs.sum()))
    threshold = observed - 1e-9 * float(np.abs(diffs).sum())
    count = 0
    for size in _chunks(permutations, len(diffs)):
        # one double per sign (not packed bytes), so the draws do not depend on the chunking
        signs = np.where(rng.random((size, len(diffs))) < 0.5, -1.0, 1.0)
        count += int(np.count_nonzero(np.abs(signs @ diffs) >= threshold))
    return (count + 1) / (permutations + 1)


def holm(pvalues: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """
    Holm-Bonferroni step-down adjusted p-values, in the input order.

    With the m p-values sorted ascending as p_(1) <= ... <= p_(m) (ties keep input order), the
    adjusted value is p̃_(i) = min(1, max over j <= i of (m - j + 1) p_(j)): monotone in the sort
    order and capped at 1. Rejecting where p̃ <= α controls the family-wise error rate at α.

    Args:
        pvalues: the family's p-values (for example, one per metric row of a table).

    Returns:
        The adjusted p-values, aligned with the input (empty for an empty input).

    Raises:
        ValueError: when a p-value is NaN or outside [0, 1], or the input is not 1-d.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        msg = f"pvalues must be 1-d, got shape {p.shape}"
        raise ValueError(msg)
    if not np.all((p >= 0) & (p <= 1)):
        msg = "p-values must lie in [0, 1] (NaN is not a p-value)"
        raise ValueError(msg)
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m, dtype=np.float64)
    out[order] = stepped
    return out


@attrs.frozen
class PairedComparison:
    """
    Model A against model B on one metric over the same users.
    """

    label: str
    """What was compared; the seeds are derived from it."""
    users: int
    mean_a: float
    mean_b: float
    difference: Interval
    """mean(a - b) with its bootstrap interval."""
    p_value: float
    """Sign-flip p-value, before any multiple-comparison adjustment."""


def compare_paired(
    values_a: npt.ArrayLike,
    values_b: npt.ArrayLike,
    *,
    seed: int,
    label: str,
    resamples: int = RESAMPLES,
    permutations: int = PERMUTATIONS,
    level: float = LEVEL,
) -> PairedComparison:
    """
    Bootstrap interval and sign-flip p-value for one comparison.

    The bootstrap uses ``derive_seed(seed, label + "/bootstrap")`` and the test
    ``derive_seed(seed, label + "/sign-flip")``. Adjust the p-values of a table's rows together with
    ``holm``.

    Args:
        values_a: per-user values of model A.
        values_b: per-user values of model B, aligned with ``values_a``.
        seed: the experiment seed.
        label: a stable name for the comparison, such as ``"default/finetuned-vs-baseline/map"``.
        resamples: bootstrap resamples.
        permutations: sign-flip permutations.
        level: confidence level.

    Returns:
        The comparison.

    Raises:
        ValueError: as ``bootstrap_ci`` and ``sign_flip_pvalue`` do.
    """
    a = _values(values_a, "values_a")
    b = _values(values_b, "values_b")
    interval = bootstrap_ci(
        a, b, resamples=resamples, level=level, seed=derive_seed(seed, f"{label}/bootstrap")
    )
    p = sign_flip_pvalue(a, b, permutations=permutations, seed=derive_seed(seed, f"{label}/sign-flip"))
    return PairedComparison(
        label=label,
        users=len(a),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        difference=interval,
        p_value=p,
    )
