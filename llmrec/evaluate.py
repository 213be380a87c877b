"""
``run_experiment(spec, dataset, provider)``: the whole experiment in memory, through the same stages
as ``llmrec run`` (see ``llmrec.pipeline``), over an in-memory run store unless given one.

The provider is passed in, never constructed here: a ``Backend`` bundle, or one object offering
whichever capabilities (chat, fine-tuning, batch chat) it satisfies. Polling waits through the
``wait`` callable (the CLI sleeps, tests do not).
"""

from __future__ import annotations

from collections.abc import Callable

from llmrec.data import Dataset
from llmrec.executor import Executor
from llmrec.keys import llmrec_version
from llmrec.pipeline import ExperimentOutcome, run_stages
from llmrec.providers.base import Backend, ChatCompleter, Progress, as_backend, no_progress
from llmrec.spec import Spec
from llmrec.stages.infer import fingerprint as request_fingerprint
from llmrec.store import MemoryRunStore, RunStore

__all__ = ["ExperimentOutcome", "request_fingerprint", "run_experiment"]


def run_experiment(
    spec: Spec,
    dataset: Dataset,
    provider: Backend | ChatCompleter,
    *,
    store: RunStore | None = None,
    wait: Callable[[], None] = lambda: None,
    progress: Progress = no_progress,
    workers: int = 1,
    executor: Executor | None = None,
) -> ExperimentOutcome:
    """
    Run the whole experiment against ``provider`` and score it; repeat it for ``experiment.seeds``.

    With ``experiment.seeds``, every other seed reruns sampling, fine-tuning and scoring on the same
    dataset; the results keep the tables of ``experiment.seed`` and add each model's metrics across
    the seeds (``Results.spread``). Stages of another seed are named ``<variant>@seed<N>``.

    Args:
        spec: the experiment.
        dataset: ratings and catalogue.
        provider: the backend (chosen by the caller).
        store: where stage outputs live (default: a new in-memory store); pass the same store again
            to resume, as the CLI does with its run directory.
        wait: called between polls of fine-tune jobs and batches.
        progress: called as stages advance.
        workers: processes for the parallel stages (the neighbour ground truth) when no
            ``executor`` is given.
        executor: where the parallel stages run their tasks (``llmrec.executor``: a process pool,
            or Ray with the ``ray`` extra); results do not depend on it.

    Returns:
        The results, predictions, job states, model ids, token usage and the stages that ran.

    Raises:
        DataError: when a variant is left without test or training users.
        ProviderError: when fine-tuning or a completion fails.
    """
    return run_stages(
        spec,
        lambda: dataset,
        as_backend(provider),
        store=store if store is not None else MemoryRunStore(),
        data_fingerprint=f"{dataset.source}:{len(dataset.ratings)}:{id(dataset)}",
        version=llmrec_version(),
        progress=progress,
        wait=wait,
        workers=workers,
        executor=executor,
    )
