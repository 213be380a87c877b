"""
Stage ``ground_truth`` (per variant): the profiles to prompt with and each user's relevant movies.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
import numpy.typing as npt

from llmrec.executor import Executor
from llmrec.ground_truth import (
    future_global_ground_truth,
    future_ground_truth,
    global_cut_day,
    knn_ground_truth,
)
from llmrec.keys import stage_key
from llmrec.ragged import Ragged
from llmrec.sampling import GroundTruth, RatingIndex, Sample, derive_ground_truth
from llmrec.spec import SamplingSpec
from llmrec.store import StageDir

__all__ = ["Truth", "compute", "key", "load", "save"]


@attrs.frozen(eq=False)
class Truth:
    """
    One variant's ground truth and the profiles it prompts with (the sample's, or earlier-ratings
    profiles for ``ground_truth = "future"`` and ``"future_global"``), aligned with the sample's users.
    """

    profiles: Ragged[np.int32]
    truth: GroundTruth
    cut_day: int | None = None
    """The global cut of ``ground_truth = "future_global"`` (days since 1970-01-01): the classic
    baselines are fitted on the ratings dated before it only. None for the other rules."""

    @property
    def kept(self) -> npt.NDArray[np.bool_]:
        """
        Users with a non-empty ground truth (the others are dropped from every split).
        """
        return self.truth.movies.lengths > 0


def key(sampling: SamplingSpec, seed: int, variant: str, sample_key: str, data_key: str, version: str) -> str:
    """
    The stage key: the variant's effective sampling rules, the seed, the sample and the data.
    """
    reads = {"sampling": sampling, "seed": seed, "variant": variant}
    return stage_key(
        f"ground_truth/{variant}", reads, {"sample": sample_key, "data": data_key}, version=version
    )


def compute(
    index: RatingIndex,
    sample: Sample,
    sampling: SamplingSpec,
    seed: int,
    variant: str,
    executor: Executor,
    progress: Callable[[int, int], None] | None = None,
) -> Truth:
    """
    Derive the variant's ground truth by its rule.
    """
    cut: int | None = None
    if sampling.ground_truth == "future":
        profiles, truth = future_ground_truth(index, sample, sampling, variant=variant)
    elif sampling.ground_truth == "future_global":
        cut = global_cut_day(index.user_days, sampling.cut_quantile)
        profiles, truth = future_global_ground_truth(index, sample, sampling, cut, variant=variant)
    elif sampling.ground_truth == "knn":
        profiles, truth = knn_ground_truth(
            index, sample, sampling, variant=variant, executor=executor, progress=progress
        )
    else:
        profiles = sample.profiles
        truth = derive_ground_truth(
            index, sample, sampling, seed, variant=variant, executor=executor, progress=progress
        )
    return Truth(profiles=profiles, truth=truth, cut_day=cut)


def save(folder: StageDir, value: Truth) -> None:
    """
    Store profiles and ground truth as offsets + values arrays.
    """
    t = value.truth
    folder.write_arrays(
        "truth",
        {
            "profile_offsets": value.profiles.offsets,
            "profile_values": value.profiles.values,
            "movie_offsets": t.movies.offsets,
            "movie_values": t.movies.values,
            "share_values": t.shares.values,
            "candidates": t.candidates,
            "drawn": t.drawn,
        },
    )
    folder.write_json("meta", {"variant": t.variant, "cut_day": value.cut_day})


def load(folder: StageDir) -> Truth:
    """
    Read stored ground truth.
    """
    data = folder.read_arrays("truth")
    meta = folder.read_json("meta")
    assert data is not None
    assert isinstance(meta, dict)
    offsets = data["movie_offsets"].astype(np.int64)
    truth = GroundTruth(
        variant=str(meta["variant"]),
        movies=Ragged(offsets, data["movie_values"].astype(np.int32)),
        shares=Ragged(offsets.copy(), data["share_values"].astype(np.float64)),
        candidates=data["candidates"].astype(np.int64),
        drawn=data["drawn"].astype(np.int64),
    )
    profiles = Ragged(data["profile_offsets"].astype(np.int64), data["profile_values"].astype(np.int32))
    cut = meta.get("cut_day")
    return Truth(profiles=profiles, truth=truth, cut_day=int(cut) if cut is not None else None)
