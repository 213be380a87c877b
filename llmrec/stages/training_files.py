"""
Stage ``training_files`` (per variant): who is in which split, and the fine-tune JSONL files.

The train (70 %) and validation (20 %) users' (profile -> ground truth) conversations are written
in OpenAI's chat fine-tuning format, one ``{"messages": [...]}`` line each. The files' bytes are what
the fine-tune stage is keyed by, so a change that leaves them identical never trains again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from llmrec.data import Movies
from llmrec.errors import DataError
from llmrec.keys import content_hash, stage_key
from llmrec.prompts import build_example
from llmrec.providers.base import ChatMessage, FineTuneExample
from llmrec.sampling import SplitName
from llmrec.spec import PromptSpec
from llmrec.stages.ground_truth import Truth
from llmrec.stages.sample import SPLITS, Sampled
from llmrec.stats import derive_seed
from llmrec.store import StageDir

__all__ = [
    "TrainingFiles",
    "check_users",
    "compute",
    "decode_examples",
    "encode_examples",
    "key",
    "load",
    "save",
]


@attrs.frozen(eq=False)
class TrainingFiles:
    """
    The variant's split members (rows of the sample with a ground truth) and its fine-tune files.
    """

    members: Mapping[SplitName, tuple[int, ...]]
    train: bytes
    validation: bytes
    prompts: tuple[tuple[str, ...], ...] = ()
    """The test members' profile titles, as the prompts write them (so inference needs no dataset)."""
    shots: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    """``prompt.few_shot`` training users' (profile, ground truth) titles, never a test user's."""

    @property
    def content_key(self) -> str:
        """
        The hash of both files' bytes: what a fine-tune of them is keyed by.
        """
        return content_hash(content_hash(self.train) + content_hash(self.validation))

    def examples(self, split: str) -> tuple[FineTuneExample, ...]:
        """
        The examples of the train or validation file.
        """
        return decode_examples(self.train if split == "train" else self.validation)


def key(prompt: PromptSpec, variant: str, truth_key: str, sample_key: str, version: str) -> str:
    """
    The stage key: the prompt texts, the ground truth and the sample.
    """
    return stage_key(
        f"training_files/{variant}",
        {"prompt": prompt},
        {"truth": truth_key, "sample": sample_key},
        version=version,
    )


def encode_examples(examples: Sequence[FineTuneExample]) -> bytes:
    """
    Examples as chat fine-tuning JSONL.
    """
    lines = [
        json.dumps(
            {"messages": [{"role": m.role, "content": m.content} for m in e.messages]}, ensure_ascii=False
        )
        for e in examples
    ]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def decode_examples(data: bytes) -> tuple[FineTuneExample, ...]:
    """
    Examples read back from chat fine-tuning JSONL.
    """
    out = []
    for line in data.decode("utf-8").split("\n"):  # "\n" only: see encode_predictions
        if not line:
            continue
        row = json.loads(line)
        out.append(FineTuneExample(tuple(ChatMessage(m["role"], m["content"]) for m in row["messages"])))
    return tuple(out)


def compute(
    sampled: Sampled, truth: Truth, prompt: PromptSpec, movies: Movies, *, seed: int, variant: str
) -> TrainingFiles:
    """
    Split the variant's users and write the training and validation examples.
    """
    kept = truth.kept
    members = {
        s: tuple(int(i) for i in np.flatnonzero(kept & (sampled.splits == code)))
        for code, s in enumerate(SPLITS)
    }

    def examples(rows: Sequence[int]) -> tuple[FineTuneExample, ...]:
        return tuple(
            build_example(
                [movies.display(int(m)) for m in truth.profiles[i]],
                [movies.display(int(m)) for m in truth.truth.movies[i]],
                prompt,
            )
            for i in rows
        )

    def titles(ids: Sequence[int] | np.ndarray[Any, Any]) -> tuple[str, ...]:
        return tuple(movies.display(int(m)) for m in ids)

    shots: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    train = members["train"]
    k = min(prompt.few_shot, len(train))
    if k:
        # drawn once per variant from a stream seeded by the experiment seed and the variant's name
        rng = np.random.default_rng(derive_seed(seed, f"{variant}/few-shot"))
        chosen = sorted(rng.choice(np.array(train), size=k, replace=False).tolist())
        shots = [(titles(truth.profiles[i]), titles(truth.truth.movies[i])) for i in chosen]
    return TrainingFiles(
        members=members,
        train=encode_examples(examples(members["train"])),
        validation=encode_examples(examples(members["validation"])),
        prompts=tuple(titles(truth.profiles[i]) for i in members["test"]),
        shots=tuple(shots),
    )


def check_users(
    variant: str, sampled: Sampled, files: TrainingFiles, *, needs_training: bool, source: str
) -> None:
    """
    Stop before any paid stage when a variant has no test users (or no training users to fine-tune
    on), naming the variant and the funnel's numbers.

    Raises:
        DataError: with the funnel of the variant.
    """
    m = files.members
    kept = len(m["train"]) + len(m["validation"]) + len(m["test"])
    funnel = (
        f"{sampled.sample.eligible:,} eligible users, {len(sampled.sample.users):,} sampled, "
        f"{kept:,} with a ground truth: train {len(m['train']):,} / validation {len(m['validation']):,} "
        f"/ test {len(m['test']):,}"
    )
    wanted: tuple[SplitName, ...] = ("test", "train") if needs_training else ("test",)
    missing = [s for s in wanted if not m[s]]
    if missing:
        msg = (
            f"variant {variant!r} has no {' and no '.join(missing)} users ({funnel}); use more data, "
            "more sampling.users, or looser neighbour settings"
        )
        raise DataError(msg, path=source)


def save(folder: StageDir, value: TrainingFiles) -> None:
    """
    Store the files and the split members.
    """
    folder.write_bytes("train.jsonl", value.train)
    folder.write_bytes("validation.jsonl", value.validation)
    folder.write_json("members", {s: list(rows) for s, rows in value.members.items()})
    folder.write_json(
        "prompts",
        {"test": [list(p) for p in value.prompts], "shots": [[list(a), list(b)] for a, b in value.shots]},
    )


def load(folder: StageDir) -> TrainingFiles:
    """
    Read stored training files.
    """
    members = folder.read_json("members")
    train, validation = folder.read_bytes("train.jsonl"), folder.read_bytes("validation.jsonl")
    assert isinstance(members, dict)
    assert train is not None
    assert validation is not None
    prompts = folder.read_json("prompts")
    assert isinstance(prompts, dict)
    return TrainingFiles(
        members={s: tuple(int(i) for i in members[s]) for s in SPLITS},
        train=train,
        validation=validation,
        prompts=tuple(tuple(p) for p in prompts["test"]),
        shots=tuple((tuple(a), tuple(b)) for a, b in prompts["shots"]),
    )
