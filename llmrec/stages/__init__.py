"""
The run as a chain of stored stages, one module per stage.

``load`` -> ``sample`` -> ``ground_truth`` (per variant) -> ``training_files`` -> ``finetune`` ->
``infer`` (per model) and ``baselines`` -> ``evaluate`` -> ``report``. Each module declares the key of
its stage (the parsed spec values it reads and its inputs' keys, see ``llmrec.keys``), computes its
output from typed inputs, and says how that output is written to and read from a ``StageDir``.
``llmrec.pipeline`` chains them over a run store; the stages themselves never touch the disk.
"""

from llmrec.stages.common import StageRun, Stages

__all__ = ["StageRun", "Stages"]
