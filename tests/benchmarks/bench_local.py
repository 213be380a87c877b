"""
Benchmark: LoRA fine-tuning throughput (examples/s) of the local provider, and generation tokens/s.

Run it by hand (pytest does not collect ``bench_*.py``; needs ``llmrec[local]``)::

    python tests/benchmarks/bench_local.py                        # tiny config on CPU, about a minute
    python tests/benchmarks/bench_local.py --threads 1            # one torch thread (shared cores)
    python tests/benchmarks/bench_local.py --config 0.5b          # Qwen2-0.5B-shaped, random weights (GPU)

It builds a model with random weights from a config (``tiny``: Llama, hidden 48, 2 layers, a BPE
vocabulary of about 800 trained on the prompts; ``0.5b``: Qwen2-0.5B's shape, hidden 896, 24 layers,
vocabulary 151,936, with the same small tokenizer, so sequences are about as long as the tiny
config's), writes it to a temporary folder, fine-tunes it through ``LocalFineTuner`` on demo-like
prompts (``--examples`` training examples, the paper's batch 32 by gradient accumulation, LoRA r=16
on all linear layers, ``--epochs``), then generates ``--answers`` (32) greedy answers of up to 64
tokens with the adapter. It prints one JSON line: examples/s (as the trainer measured it), wall
time, generation tokens/s, and on CUDA the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository root

from llmrec.providers.base import ChatRequest, FineTuneRequest, Hyperparameters
from llmrec.providers.local import LocalChat, LocalFineTuner
from llmrec.spec import LocalProviderSpec, LoraSpec
from tests.providers.local_tiny_lm import build_tiny_model, demo_examples, tokenizer_texts

CONFIGS = {
    "tiny": {"hidden_size": 48, "layers": 2},
    "0.5b": {
        "hidden_size": 896,
        "layers": 24,
        "intermediate_size": 4864,
        "heads": 14,
        "kv_heads": 2,
        "vocab": 151936,
        "arch": "qwen2",
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--answers", type=int, default=32, help="greedy answers generated with the adapter")
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    examples = demo_examples(args.examples + 8 + 32)
    train, valid, test = (
        examples[: args.examples],
        examples[args.examples : args.examples + 8],
        examples[-32:],
    )
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-local-") as tmp:
        model = build_tiny_model(Path(tmp) / "model", tokenizer_texts(examples), **_build_args(args.config))
        settings = LocalProviderSpec(device=args.device, micro_batch_size=args.micro_batch)
        tuner = LocalFineTuner(Path(tmp) / "runs", LoraSpec(rank=16, alpha=32, dropout=0.05), settings)
        request = FineTuneRequest(
            base_model=str(model),
            training=tuple(train),
            validation=tuple(valid),
            hyperparameters=Hyperparameters(batch_size=32, epochs=args.epochs, learning_rate=2e-4),
            seed=7,
        )
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        job = tuner.submit_finetune(request)
        state = tuner.wait(job)
        wall = time.perf_counter() - start
        if state.status != "succeeded" or state.model is None:
            print(f"training {state.status}: {state.error}", file=sys.stderr)
            return 1
        stored = tuner.job_folder(job).read()
        peak_train = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        rates: list[float] = []

        def progress(
            stage: str, done: int, total: int | None, *, rate: float | None = None, note: str = ""
        ) -> None:
            if rate is not None:
                rates.append(rate)

        chat = LocalChat(
            str(model), LocalProviderSpec(device=args.device, generation_batch_size=32), progress=progress
        )
        requests = [
            ChatRequest(key=str(i), model=state.model, messages=e.messages[:-1], max_tokens=64)
            for i, e in enumerate(test)
        ]
        list(chat.complete(requests))
        print(
            json.dumps(
                {
                    "config": args.config,
                    "device": chat.device,
                    "dtype": chat.dtype,
                    "torch_threads": torch.get_num_threads(),
                    "examples": args.examples,
                    "epochs": args.epochs,
                    "examples_per_s": round(stored["examples_per_s"], 2),
                    "train_runtime_s": round(stored["train_runtime_s"], 1),
                    "wall_s": round(wall, 1),
                    "generation_tokens_per_s": round(rates[-1], 1) if rates else None,
                    "peak_train_gib": round(peak_train, 2) if peak_train is not None else None,
                    "versions": _versions(),
                }
            )
        )
    return 0


def _build_args(config: str) -> dict[str, object]:
    c = CONFIGS[config]
    out: dict[str, object] = {"hidden_size": c["hidden_size"], "layers": c["layers"]}
    for key in ("intermediate_size", "heads", "kv_heads", "vocab", "arch"):
        if key in c:
            out[key] = c[key]
    return out


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }


if __name__ == "__main__":
    sys.exit(main())
