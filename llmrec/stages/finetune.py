"""
Stage ``finetune`` (per variant and seed): a fine-tuned model from the training files.

Paid, so keyed by content only (the backend's identity, the shared fine-tune settings and the files'
bytes), never by llmrec's version. It runs in two phases over every variant at once, so jobs train
side by side: ``attach`` re-attaches to the stored job id, or finds the job by its idempotency key
(the stage key in the job's metadata) when a process died between creating it and storing its id,
or submits it and stores the id atomically before the first poll; ``poll`` looks once, archives
the job's new events in the stage's log, and stores the final state when the job ends.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from typing import Any

import attrs

from llmrec.codec import CONVERTER
from llmrec.errors import ProviderError
from llmrec.failpoints import failpoint
from llmrec.keys import stage_key
from llmrec.providers.base import FineTuneJob, FineTuner, FineTuneRequest, Hyperparameters, JobEvent, JobState
from llmrec.spec import FinetuneSpec, ProviderKind
from llmrec.stages.training_files import TrainingFiles
from llmrec.store import StageDir

__all__ = [
    "FineTuned",
    "Plan",
    "Step",
    "attach",
    "hyperparameters",
    "key",
    "load",
    "poll",
    "read_steps",
    "request",
]

Step = tuple[tuple[str, float], ...]
"""One row of a job's per-step metrics: (name, value) pairs, ``step`` among them."""


@attrs.frozen
class FineTuned:
    """
    A finished fine-tune: the model id, the job's final state and its events.
    """

    model: str
    state: JobState
    events: tuple[JobEvent, ...]
    steps: tuple[Step, ...] = ()
    """Per-step metrics from the job's archived result files (OpenAI's CSV: step, train_loss,
    valid_loss, ...), in file order; empty when the backend keeps none."""


def read_steps(data: bytes) -> tuple[Step, ...]:
    """
    The rows of a per-step result CSV (a header, then one row per step): the numeric cells of each
    row that has a step; empty cells and other text are left out, and a file that is not CSV text
    gives nothing.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ()
    rows: list[Step] = []
    try:
        for row in csv.DictReader(io.StringIO(text)):
            values: list[tuple[str, float]] = []
            for name, cell in row.items():
                if not isinstance(name, str) or not isinstance(cell, str):
                    continue
                try:
                    number = float(cell)
                except ValueError:
                    continue
                if math.isfinite(number):
                    values.append((name.strip(), number))
            if any(name == "step" for name, _ in values):
                rows.append(tuple(values))
    except csv.Error:
        return ()
    return tuple(rows)


def _steps(folder: StageDir, files: int) -> tuple[Step, ...]:
    found: list[Step] = []
    for n in range(files):
        data = folder.read_bytes(f"result-{n}.csv")
        if data:
            found.extend(read_steps(data))
    return tuple(found)


@attrs.frozen(eq=False)
class Plan:
    """
    One fine-tune to run: its stage name, folder and request.
    """

    stage: str
    variant: str
    folder: StageDir
    request: FineTuneRequest


def hyperparameters(finetune: FinetuneSpec, kind: ProviderKind) -> Hyperparameters:
    """
    The hyperparameters a backend of this kind gets (Table 1's LR multiplier 1 when unset, for OpenAI
    and the fake; the learning rate for local training).
    """
    return Hyperparameters(
        batch_size=finetune.batch_size,
        epochs=finetune.epochs,
        learning_rate_multiplier=(None if kind == "local" else (finetune.learning_rate_multiplier or 1.0)),
        learning_rate=finetune.learning_rate if kind == "local" else None,
    )


def key(
    identity: str, finetune: FinetuneSpec, hyper: Hyperparameters, seed: int, files: TrainingFiles
) -> str:
    """
    The stage key: content only (no llmrec version), so an upgrade never trains again.
    """
    reads = {
        "backend": identity,
        "base_model": finetune.base_model,
        "hyperparameters": hyper,
        "lora": finetune.lora,
        "seed": seed,
    }
    return stage_key("finetune", reads, {"files": files.content_key}, version=None)


def request(
    finetune: FinetuneSpec,
    hyper: Hyperparameters,
    seed: int,
    files: TrainingFiles,
    *,
    stage_key_: str,
    suffix: str,
    metadata: Mapping[str, str],
) -> FineTuneRequest:
    """
    The fine-tune request of a plan (the idempotency key travels in the metadata).
    """
    return FineTuneRequest(
        base_model=finetune.base_model,
        training=files.examples("train"),
        validation=files.examples("validation"),
        hyperparameters=hyper,
        suffix=suffix,
        seed=seed,
        metadata=(("llmrec_key", stage_key_), *sorted(metadata.items())),
    )


def attach(plan: Plan, tuner: FineTuner) -> FineTuneJob:
    """
    The plan's job: the stored one, the one the backend knows by idempotency key, or a new one
    (whose id is stored before it is ever polled).
    """
    stored = plan.folder.read_json("job")
    if isinstance(stored, dict) and stored.get("id"):
        return FineTuneJob(id=str(stored["id"]))
    found = tuner.find_finetune(plan.folder.key)
    how = "found by idempotency key"
    if found is None:
        found = tuner.submit_finetune(plan.request)
        how = "submitted"
        failpoint("finetune-created")
    plan.folder.write_json("job", {"id": found.id, "how": how})
    return found


def _event_record(e: JobEvent) -> dict[str, Any]:
    record: dict[str, Any] = CONVERTER.unstructure(e)
    return record


def _event(r: Mapping[str, Any]) -> JobEvent:
    return CONVERTER.structure({"metrics": {}, **r}, JobEvent)


def poll(plan: Plan, job: FineTuneJob, tuner: FineTuner) -> FineTuned | None:
    """
    One look at the job: new events archived, the final state stored when it ends.

    Returns:
        The finished fine-tune, or None while the job runs.

    Raises:
        ProviderError: when the job failed or was cancelled (the stored job id is dropped so that a
            rerun submits a new job; the failed one is kept in ``failed_jobs``).
    """
    state = tuner.poll_finetune(job)
    log = plan.folder.log("events")
    after = str(log.records[-1]["id"]) if log.records else None
    for event in tuner.finetune_events(job, after):
        log.append(_event_record(event))
    if not state.done:
        return None
    if state.status != "succeeded" or state.model is None:
        failed = plan.folder.read_json("failed_jobs") or []
        plan.folder.write_json(
            "failed_jobs", [*failed, {"id": job.id, "status": state.status, "error": state.error}]
        )
        plan.folder.write_json("job", {})
        last = log.records[-1]["message"] if log.records else "no detail"
        msg = f"fine-tune job {job.id} for {plan.variant} ended {state.status}: {state.error or last}"
        raise ProviderError(msg)
    # the backend's own files for the job (OpenAI's per-step result CSV): archived, the only lasting record
    read = getattr(tuner, "read_result_file", None)
    for n, file_id in enumerate(state.result_files):
        if callable(read) and plan.folder.read_bytes(f"result-{n}.csv") is None:
            plan.folder.write_bytes(f"result-{n}.csv", read(file_id))
    plan.folder.write_json("state", _state_record(state))
    return FineTuned(
        model=state.model,
        state=state,
        events=tuple(_event(r) for r in log.records),
        steps=_steps(plan.folder, len(state.result_files)),
    )


def _state_record(state: JobState) -> dict[str, Any]:
    record: dict[str, Any] = CONVERTER.unstructure(state)
    return record


def load(folder: StageDir) -> FineTuned:
    """
    Read a finished fine-tune.
    """
    data = folder.read_json("state")
    assert isinstance(data, dict)
    state = CONVERTER.structure(data, JobState)
    assert state.model is not None
    events = tuple(_event(r) for r in folder.log("events").records)
    return FineTuned(
        model=state.model, state=state, events=events, steps=_steps(folder, len(state.result_files))
    )
