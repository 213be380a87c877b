"""
Ragged arrays: one offsets array and one values array for many variable-length rows (CSR style).

Samples (profiles) and ground truth (movies, shares) hold one short row per user; at 10,000 users or
every Netflix user, a Python object per row is what this avoids. ``Ragged`` is read like a tuple of
arrays (``len``, indexing, iteration give row views) and stored as its two arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["Ragged"]

T = TypeVar("T", bound=np.generic)


@attrs.frozen(eq=False)
class Ragged(Generic[T]):
    """
    Rows of one dtype: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.
    """

    offsets: npt.NDArray[np.int64]
    values: npt.NDArray[T]

    def __attrs_post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0:
            msg = "offsets must be a 1-d array starting at 0"
            raise ValueError(msg)
        if int(self.offsets[-1]) != len(self.values) or (np.diff(self.offsets) < 0).any():
            msg = "offsets must be non-decreasing and end at len(values)"
            raise ValueError(msg)

    @classmethod
    def from_rows(cls, rows: Sequence[npt.ArrayLike], dtype: type[T] | np.dtype[T]) -> Ragged[T]:
        """
        Pack rows (any array-likes) into one values array.
        """
        arrays = [np.asarray(r, dtype=dtype).reshape(-1) for r in rows]
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
        return cls(offsets=offsets, values=values.astype(dtype, copy=False))

    @classmethod
    def from_lengths(cls, lengths: npt.ArrayLike, values: npt.NDArray[T]) -> Ragged[T]:
        """
        Rows of the given lengths over ``values`` (in row order).
        """
        counts = np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets=offsets, values=values)

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        """
        The length of every row.
        """
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> npt.NDArray[T]:
        n = len(self)
        if not -n <= i < n:
            msg = f"row {i} out of range for {n} rows"
            raise IndexError(msg)
        i %= n
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[npt.NDArray[T]]:
        values, offsets = self.values, self.offsets.tolist()
        for a, b in itertools.pairwise(offsets):
            yield values[a:b]

    def take(self, rows: npt.ArrayLike) -> Ragged[T]:
        """
        A new ``Ragged`` with the chosen rows, in the order given.
        """
        index = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[index], self.offsets[index + 1]
        lengths = ends - starts
        picks = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(
            int(lengths.sum())
        )
        return Ragged.from_lengths(lengths, self.values[picks])

    def equals(self, other: Ragged[Any]) -> bool:
        """
        Same rows, same values.
        """
        return bool(np.array_equal(self.offsets, other.offsets) and np.array_equal(self.values, other.values))
