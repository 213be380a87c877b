"""
Stage ``sample``: draw the users, build their profiles and assign each user a split.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.ground_truth import global_cut_day
from llmrec.keys import stage_key
from llmrec.ragged import Ragged
from llmrec.sampling import RatingIndex, Sample, SplitName, assign_splits, sample_users
from llmrec.spec import SamplingSpec, SplitSpec
from llmrec.store import StageDir

__all__ = ["SPLITS", "Sampled", "compute", "key", "load", "save"]

SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")
# the sampling fields the draw and the profiles depend on (neighbour fields belong to ground truth)
_READS = ("users", "min_five_star_ratings", "eligibility_filter", "profile_size", "profile_date_order")
# with [sampling] ground_truth = "future_global", eligibility and profiles see only the ratings before the cut
_GLOBAL_READS = ("ground_truth", "cut_quantile")


@attrs.frozen(eq=False)
class Sampled:
    """
    The sample and every sampled user's split (0 train, 1 validation, 2 test), aligned.
    """

    sample: Sample
    splits: npt.NDArray[np.int8]

    def split_of(self, i: int) -> SplitName:
        """
        The split of sampled user ``i``.
        """
        return SPLITS[int(self.splits[i])]


def key(sampling: SamplingSpec, split: SplitSpec, seed: int, data_key: str, version: str) -> str:
    """
    The stage key: the draw's sampling fields, the split shares, the seed and the data.
    """
    fields = _READS + (_GLOBAL_READS if sampling.ground_truth == "future_global" else ())
    reads = {"sampling": {f: getattr(sampling, f) for f in fields}, "split": split, "seed": seed}
    return stage_key("sample", reads, {"data": data_key}, version=version)


def compute(index: RatingIndex, sampling: SamplingSpec, split: SplitSpec, seed: int) -> Sampled:
    """
    Draw the sample and its splits; with ``ground_truth = "future_global"``, on the ratings dated
    before the global cut only (eligibility and profiles).
    """
    cut = None
    if sampling.ground_truth == "future_global":
        cut = global_cut_day(index.user_days, sampling.cut_quantile)
    sample = sample_users(index, sampling, seed, before_day=cut)
    names = assign_splits(sample.users, split, seed)
    codes = np.array([SPLITS.index(s) for s in names], dtype=np.int8).reshape(len(names))
    return Sampled(sample=sample, splits=codes)


def save(folder: StageDir, value: Sampled) -> None:
    """
    Store the sample as arrays.
    """
    s = value.sample
    folder.write_arrays(
        "sample",
        {
            "users": s.users,
            "profile_offsets": s.profiles.offsets,
            "profile_values": s.profiles.values,
            "splits": value.splits,
            "eligible": np.array([s.eligible], dtype=np.int64),
        },
    )


def load(folder: StageDir) -> Sampled:
    """
    Read a stored sample.
    """
    data: dict[str, Any] | None = folder.read_arrays("sample")
    assert data is not None  # a finished stage always has its arrays
    sample = Sample(
        users=data["users"].astype(np.int32),
        profiles=Ragged(data["profile_offsets"].astype(np.int64), data["profile_values"].astype(np.int32)),
        eligible=int(data["eligible"][0]),
    )
    return Sampled(sample=sample, splits=data["splits"].astype(np.int8))
