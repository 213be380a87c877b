"""
Open-weight models on this machine: LoRA fine-tuning with TRL + PEFT, generation with transformers.

``provider.kind = "local"`` (needs the optional extra ``llmrec[local]``). The third-party libraries are
imported only when a provider is built, so the core install stays light; without the extra the
constructor raises a ``ProviderError`` that says how to install it.

- ``LocalChat`` answers chat requests with batched generation through the tokenizer's chat template
  (greedy at temperature 0, else sampling with the request's seed). A request's ``model`` is a base
  model (a Hugging Face id or a local folder) or an adapter id this provider returned
  (``local-adapter:<folder>``); models stay loaded, and every adapter of one base shares its weights.
- ``LocalFineTuner`` trains a LoRA adapter in a background thread of this process; each job lives in
  a folder ``<output_dir>/<job id>`` (``job.json``, ``events.jsonl``, ``adapter/``). The job id is a
  hash of what the training reads, so a rerun, in this process or a later one, finds the stored
  adapter and trains nothing. A job whose process ended before it finished reads as failed.

Training itself is in ``local_train.py``, generation in ``local_generate.py``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from typing_extensions import override

from llmrec.errors import MissingExtraError, ProviderError
from llmrec.providers.base import (
    Backend,
    ChatCompleter,
    ChatRequest,
    ChatResult,
    FineTuneJob,
    FineTuner,
    FineTuneRequest,
    JobEvent,
    JobState,
    JobStatus,
    Progress,
    no_progress,
)
from llmrec.spec import FinetuneSpec, LocalProviderSpec, LoraSpec

__all__ = [
    "ADAPTER_PREFIX",
    "DEFAULT_LEARNING_RATE",
    "INSTALL_HINT",
    "LocalChat",
    "LocalFineTuner",
    "LocalLibraries",
    "adapter_id",
    "adapter_path",
    "load_libraries",
    "make_local_backend",
    "micro_batch_size",
]

ADAPTER_PREFIX = "local-adapter:"
"""Model ids of adapters this provider trained: the prefix, then the adapter folder."""

DEFAULT_LEARNING_RATE = 2e-4
"""The LoRA learning rate when ``finetune.learning_rate`` is unset."""

INSTALL_HINT = (
    "provider.kind = \"local\" needs the optional extra: pip install 'llmrec[local]' "
    "(for a CPU-only machine, pip install torch first; see docs/local.md)"
)

_JOB_PREFIX = "ftjob-local-"
_MAX_MICRO_BATCH = 8


@attrs.frozen(eq=False)
class LocalLibraries:
    """
    The third-party modules the local provider uses, imported on demand (typed loosely on purpose:
    llmrec's types stop at this seam).
    """

    torch: Any
    transformers: Any
    peft: Any
    trl: Any
    datasets: Any


_LIBS: LocalLibraries | None = None


def load_libraries() -> LocalLibraries:
    """
    Import torch, transformers, peft, trl and datasets (once per process).

    Raises:
        ProviderError: when one is missing, with the one-line install instruction.
    """
    global _LIBS
    if _LIBS is None:
        names = ("torch", "transformers", "peft", "trl", "datasets")
        try:
            modules = [importlib.import_module(name) for name in names]
        except ImportError as exc:
            missing = exc.name or str(exc)
            msg = f"{INSTALL_HINT} (cannot import {missing})"
            raise MissingExtraError(msg) from None
        transformers = modules[1]
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        modules[4].disable_progress_bars()
        _LIBS = LocalLibraries(*modules)
    return _LIBS


def resolve_device(setting: str, libs: LocalLibraries) -> tuple[str, str]:
    """
    The device and dtype name for ``provider.local.device``: bf16 on a GPU that has it, else float32.

    Raises:
        ProviderError: when "cuda" is asked for and no GPU is visible.
    """
    cuda = bool(libs.torch.cuda.is_available())
    if setting == "cuda" and not cuda:
        msg = 'provider.local.device = "cuda": torch sees no CUDA device (is this a CPU build of torch?)'
        raise ProviderError(msg)
    device = "cuda" if setting == "cuda" or (setting == "auto" and cuda) else "cpu"
    if device == "cuda" and bool(libs.torch.cuda.is_bf16_supported()):
        return device, "bfloat16"
    return device, "float32"


def adapter_id(folder: Path) -> str:
    """
    The model id that names a saved adapter folder.
    """
    return ADAPTER_PREFIX + str(folder)


def adapter_path(model: str) -> Path | None:
    """
    The adapter folder a model id names, or None for a base model.
    """
    return Path(model[len(ADAPTER_PREFIX) :]) if model.startswith(ADAPTER_PREFIX) else None


def micro_batch_size(batch_size: int, settings: LocalProviderSpec) -> int:
    """
    Examples per device step: ``provider.local.micro_batch_size``, else the largest divisor of
    ``batch_size`` up to 8.

    Raises:
        ProviderError: when the set micro batch does not divide the batch size.
    """
    if settings.micro_batch_size is not None:
        if batch_size % settings.micro_batch_size:
            msg = (
                f"provider.local.micro_batch_size = {settings.micro_batch_size} does not divide "
                f"finetune.batch_size = {batch_size} (the batch is reached by gradient accumulation)"
            )
            raise ProviderError(msg)
        return settings.micro_batch_size
    return max(d for d in range(1, min(batch_size, _MAX_MICRO_BATCH) + 1) if batch_size % d == 0)


# -- chat -------------------------------------------------------------------------------------------------


class LocalChat(ChatCompleter):
    """
    Chat completions from open-weight models on this machine (a base model and its adapters).

    Args:
        base_model: the base model, a Hugging Face id or a local folder (``finetune.base_model``).
        settings: the ``[provider.local]`` table (device, generation batch size).
        progress: where generation throughput is reported (tokens per second).

    Raises:
        ProviderError: when the ``local`` extra is not installed, or the device is unavailable.
    """

    def __init__(
        self,
        base_model: str,
        settings: LocalProviderSpec | None = None,
        *,
        progress: Progress = no_progress,
    ) -> None:
        from llmrec.providers.local_generate import ModelPool

        self._libs = load_libraries()
        self._settings = settings or LocalProviderSpec()
        self._device, self._dtype = resolve_device(self._settings.device, self._libs)
        self._base_model = base_model
        self._progress = progress
        self._pool = ModelPool(self._libs, self._device, self._dtype)

    @property
    @override
    def identity(self) -> str:
        return f"local(model={self._base_model}, device={self._device}, dtype={self._dtype})"

    @property
    def device(self) -> str:
        """
        Where the models run ("cpu" or "cuda").
        """
        return self._device

    @property
    def dtype(self) -> str:
        """
        The weights' dtype ("float32" or "bfloat16").
        """
        return self._dtype

    @override
    def complete(self, requests: Sequence[ChatRequest]) -> Iterator[ChatResult]:
        from llmrec.providers.local_generate import generate

        return generate(
            self._pool, requests, batch_size=self._settings.generation_batch_size, progress=self._progress
        )


# -- fine-tuning ------------------------------------------------------------------------------------------


def _now() -> float:
    return time.time()


class JobFolder:
    """
    One job's folder: ``job.json`` (the state, replaced atomically) and ``events.jsonl``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    @property
    def adapter_dir(self) -> Path:
        """
        Where the trained adapter is saved.
        """
        return self.folder / "adapter"

    def exists(self) -> bool:
        """
        Whether the job was ever created here.
        """
        return (self.folder / "job.json").is_file()

    def read(self) -> dict[str, Any]:
        """
        The stored state.
        """
        data: dict[str, Any] = json.loads((self.folder / "job.json").read_text(encoding="utf-8"))
        return data

    def write(self, **changes: Any) -> dict[str, Any]:
        """
        Update the stored state with ``changes`` (atomically) and return it.
        """
        with self._lock:
            state = self.read() if self.exists() else {}
            state.update(changes)
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / "job.json.tmp"
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.folder / "job.json")
            return state

    def event(self, message: str, metrics: Sequence[tuple[str, float]] = (), level: str = "info") -> None:
        """
        Append one event.
        """
        with self._lock:
            path = self.folder / "events.jsonl"
            n = 0
            if path.exists():
                with path.open(encoding="utf-8") as fh:
                    n = sum(1 for _ in fh)
            line = {
                "id": str(n + 1),
                "time": _now(),
                "level": level,
                "message": message,
                "metrics": [[k, float(v)] for k, v in metrics],
            }
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")

    def events(self) -> list[JobEvent]:
        """
        Every event, oldest first.
        """
        path = self.folder / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            metrics = tuple((str(k), float(v)) for k, v in d["metrics"])
            out.append(
                JobEvent(id=d["id"], time=d["time"], level=d["level"], message=d["message"], metrics=metrics)
            )
        return out

    def clear(self) -> None:
        """
        Remove what a failed or cancelled attempt left, so the job can run again.
        """
        import shutil

        with self._lock:
            if self.folder.exists():
                shutil.rmtree(self.folder)


class LocalFineTuner(FineTuner):
    """
    LoRA fine-tuning of an open-weight model with TRL's SFTTrainer, in a background thread.

    Args:
        output_dir: the folder that holds one sub-folder per job (the run store's folder for it).
        lora: the LoRA settings (``[finetune.lora]``).
        settings: the ``[provider.local]`` table (device, micro batch, sequence-length limit).
        progress: where training progress is reported (by ``poll_finetune``, with examples per second).

    Raises:
        ProviderError: when the ``local`` extra is not installed, or the device is unavailable.
    """

    def __init__(
        self,
        output_dir: Path,
        lora: LoraSpec | None = None,
        settings: LocalProviderSpec | None = None,
        *,
        progress: Progress = no_progress,
    ) -> None:
        self._libs = load_libraries()
        self._output_dir = Path(output_dir)
        self._lora = lora or LoraSpec()
        self._settings = settings or LocalProviderSpec()
        self._device, self._dtype = resolve_device(self._settings.device, self._libs)
        self._progress = progress
        self._threads: dict[str, threading.Thread] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._folders: dict[str, JobFolder] = {}
        self._lock = threading.Lock()
        self.trainings = 0
        """How many trainings this object started (a rerun that reuses an adapter starts none)."""

    @property
    def output_dir(self) -> Path:
        """
        The folder holding the job folders.
        """
        return self._output_dir

    def job_folder(self, job: FineTuneJob | str) -> JobFolder:
        """
        The folder of a job (by handle or id).
        """
        job_id = job if isinstance(job, str) else job.id
        if not job_id.startswith(_JOB_PREFIX) or "/" in job_id or "\\" in job_id:
            msg = f"unknown local fine-tune job {job_id!r}"
            raise ProviderError(msg)
        with self._lock:
            if job_id not in self._folders:
                self._folders[job_id] = JobFolder(self._output_dir / job_id)
            return self._folders[job_id]

    def _job_id(self, request: FineTuneRequest) -> str:
        # What the training reads (never the metadata: it carries stage keys), and how it runs.
        content = repr(
            (
                attrs.evolve(request, metadata=()),
                self._lora,
                micro_batch_size(request.hyperparameters.batch_size, self._settings),
                self._settings.max_seq_length,
                self._dtype,
            )
        )
        return _JOB_PREFIX + hashlib.sha256(content.encode("utf-8")).hexdigest()[:20]

    def _alive(self, job_id: str) -> bool:
        thread = self._threads.get(job_id)
        return thread is not None and thread.is_alive()

    @override
    def submit_finetune(self, request: FineTuneRequest) -> FineTuneJob:
        from llmrec.providers.local_train import check_request, train

        hp = request.hyperparameters
        if hp.learning_rate_multiplier is not None:
            msg = (
                "learning_rate_multiplier is OpenAI-only; local LoRA training takes finetune.learning_rate "
                f"(unset: {DEFAULT_LEARNING_RATE})"
            )
            raise ProviderError(msg)
        micro = micro_batch_size(hp.batch_size, self._settings)
        job = FineTuneJob(id=self._job_id(request))
        folder = self.job_folder(job)
        key = request.idempotency_key
        with self._lock:
            if self._alive(job.id):
                return job
            if folder.exists() and folder.read().get("status") == "succeeded" and folder.adapter_dir.is_dir():
                keys = folder.read().get("keys", [])
                if key is not None and key not in keys:
                    folder.write(keys=[*keys, key])
                return job
        max_length, epoch_tokens = check_request(self._libs, request, self._settings)
        folder.clear()
        folder.write(
            job_id=job.id,
            status="queued",
            base_model=request.base_model,
            keys=[key] if key is not None else [],
            created=_now(),
            pid=os.getpid(),
            model=None,
            error=None,
            step=0,
            max_steps=None,
            examples_per_s=None,
            trained_tokens=None,
        )
        folder.event(f"created job for {request.base_model}: {len(request.training)} training examples")
        cancel = threading.Event()
        thread = threading.Thread(
            target=train,
            kwargs={
                "libs": self._libs,
                "folder": folder,
                "request": request,
                "lora": self._lora,
                "micro_batch": micro,
                "max_length": max_length,
                "device": self._device,
                "dtype": self._dtype,
                "learning_rate": hp.learning_rate or DEFAULT_LEARNING_RATE,
                "epoch_tokens": epoch_tokens,
                "cancel": cancel,
            },
            name=f"llmrec-train-{job.id}",
            daemon=True,
        )
        with self._lock:
            self._cancel[job.id] = cancel
            self._threads[job.id] = thread
            self.trainings += 1
        thread.start()
        return job

    @override
    def find_finetune(self, idempotency_key: str) -> FineTuneJob | None:
        if not self._output_dir.is_dir():
            return None
        found: list[tuple[float, str]] = []
        for child in self._output_dir.iterdir():
            if not child.name.startswith(_JOB_PREFIX) or not (child / "job.json").is_file():
                continue
            state = self.job_folder(child.name).read()
            if idempotency_key not in state.get("keys", []):
                continue
            if state.get("status") == "succeeded" or self._alive(child.name):
                found.append((float(state.get("created", 0.0)), child.name))
        return FineTuneJob(id=max(found)[1]) if found else None

    @override
    def poll_finetune(self, job: FineTuneJob) -> JobState:
        folder = self.job_folder(job)
        if not folder.exists():
            msg = f"unknown local fine-tune job {job.id!r} (no folder {folder.folder})"
            raise ProviderError(msg)
        state = folder.read()
        status: JobStatus = state["status"]
        error = state.get("error")
        if status in ("queued", "running") and not self._alive(job.id):
            # The thread that trained it is gone (another process, or one that died).
            status, error = "failed", "interrupted: the process training it ended before it finished"
        if status == "running" and state.get("max_steps"):
            rate = state.get("examples_per_s")
            self._progress(
                f"fine-tune {job.id}",
                int(state.get("step", 0)),
                int(state["max_steps"]),
                rate=float(rate) if rate else None,
                note="examples/s",
            )
        return JobState(
            job_id=job.id,
            status=status,
            model=state.get("model") if status == "succeeded" else None,
            error=error,
            trained_tokens=state.get("trained_tokens"),
        )

    @override
    def finetune_events(self, job: FineTuneJob, after: str | None = None) -> tuple[JobEvent, ...]:
        folder = self.job_folder(job)
        if not folder.exists():
            msg = f"unknown local fine-tune job {job.id!r}"
            raise ProviderError(msg)
        events = folder.events()
        if after is not None:
            ids = [e.id for e in events]
            events = events[ids.index(after) + 1 :] if after in ids else []
        return tuple(events)

    @override
    def cancel_finetune(self, job: FineTuneJob) -> JobState:
        folder = self.job_folder(job)
        if not folder.exists():
            msg = f"unknown local fine-tune job {job.id!r}"
            raise ProviderError(msg)
        cancel = self._cancel.get(job.id)
        if cancel is not None and self._alive(job.id):
            cancel.set()
            self._threads[job.id].join()
        elif folder.read()["status"] in ("queued", "running"):
            folder.write(status="cancelled", error="cancelled")
        return self.poll_finetune(job)

    def wait(self, job: FineTuneJob, timeout: float | None = None) -> JobState:
        """
        Block until the job's thread ends (or ``timeout`` seconds pass), then poll it once.
        """
        thread = self._threads.get(job.id)
        if thread is not None:
            thread.join(timeout)
        return self.poll_finetune(job)


# -- the bundle -------------------------------------------------------------------------------------------


def make_local_backend(
    finetune_spec: FinetuneSpec,
    local_settings: LocalProviderSpec,
    output_dir: Path,
    progress: Progress | None = None,
) -> Backend:
    """
    The local backend: chat (base model and adapters) and LoRA fine-tuning into ``output_dir``.

    Raises:
        ProviderError: when the ``local`` extra is not installed, the device is unavailable, or the
            micro batch does not divide the batch size.
    """
    report = progress or no_progress
    micro_batch_size(finetune_spec.batch_size, local_settings)
    chat = LocalChat(finetune_spec.base_model, local_settings, progress=report)
    tuner = LocalFineTuner(output_dir, finetune_spec.lora, local_settings, progress=report)
    return Backend(chat=chat, finetune=tuner)
