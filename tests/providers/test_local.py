"""
The local provider: LoRA fine-tuning (TRL + PEFT) and generation of a tiny random model built offline.

Tests that need the ``local`` extra skip without it, and fail under CI=true (CI installs it).
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llmrec.providers.local as local
from llmrec.errors import ProviderError, SpecError
from llmrec.providers.base import (
    ChatCompleter,
    ChatRequest,
    FineTuneJob,
    FineTuner,
    FineTuneRequest,
    Hyperparameters,
)
from llmrec.providers.local import LocalChat, LocalFineTuner, make_local_backend, micro_batch_size
from llmrec.providers.local_train import lora_config, sequence_lengths, sft_config, to_record
from llmrec.spec import FinetuneSpec, LocalProviderSpec, LoraSpec, parse_spec
from tests.providers.local_tiny_lm import build_tiny_model, demo_examples, tokenizer_texts

# transformers, peft and trl deprecate each other's names from one release to the next (FutureWarning);
# nothing llmrec can act on.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

EXTRA = ("torch", "transformers", "peft", "trl", "datasets")
LORA = LoraSpec(rank=8, alpha=16, dropout=0.0)
SETTINGS = LocalProviderSpec(device="cpu", micro_batch_size=4, generation_batch_size=8)
HYPER = Hyperparameters(batch_size=8, epochs=2, learning_rate=2e-2)
KEY = "stage-key-finetune-1"


def require_extra() -> None:
    """Skip without the local extra; under CI=true a missing extra fails instead."""
    for name in EXTRA:
        if os.environ.get("CI") == "true":
            importlib.import_module(name)
        else:
            pytest.importorskip(name)


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[Any]:
    """torch on one thread: on two shared cores, two OpenMP threads spin against other work (10x slower)."""
    require_extra()
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def examples() -> list[Any]:
    return demo_examples(64)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, torch_one_thread: Any, examples: list[Any]) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer_texts(examples))


def _request(model: Path, examples: list[Any], **changes: Any) -> FineTuneRequest:
    fields: dict[str, Any] = {
        "base_model": str(model),
        "training": tuple(examples[:32]),
        "validation": tuple(examples[32:40]),
        "hyperparameters": HYPER,
        "seed": 7,
        "metadata": (("llmrec_key", KEY),),
    }
    fields.update(changes)
    return FineTuneRequest(**fields)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, examples: list[Any]
) -> tuple[LocalFineTuner, FineTuneJob, Path]:
    """One fine-tune job run to the end: 32 examples, batch 8 = micro batch 4 x 2, 2 epochs."""
    out = tmp_path_factory.mktemp("runs")
    tuner = LocalFineTuner(out, LORA, SETTINGS)
    job = tuner.submit_finetune(_request(tiny_model, examples))
    state = tuner.wait(job, timeout=300)
    assert state.status == "succeeded", state.error
    return tuner, job, out


# -- without the extra --------------------------------------------------------------------------------


def test_missing_extra_gives_one_line_instruction(monkeypatch: pytest.MonkeyPatch):
    """Without the extra, a provider raises a ProviderError naming the pip command (no ImportError)."""
    real = importlib.import_module

    def no_extra(name: str, package: str | None = None) -> Any:
        if name in EXTRA:
            msg = f"No module named {name!r}"
            raise ModuleNotFoundError(msg, name=name)
        return real(name, package)

    monkeypatch.setattr(local, "_LIBS", None)
    monkeypatch.setattr(importlib, "import_module", no_extra)
    with pytest.raises(ProviderError) as info:
        LocalChat("some/model")

    message = str(info.value)
    assert "pip install 'llmrec[local]'" in message
    assert "cannot import torch" in message
    assert "\n" not in message


def test_micro_batch_is_the_largest_divisor_up_to_eight():
    """Unset, the micro batch is the largest divisor of the batch size up to 8; a set one must divide it."""
    unset = LocalProviderSpec()

    assert [micro_batch_size(b, unset) for b in (32, 12, 9, 7, 1)] == [8, 6, 3, 7, 1]
    assert micro_batch_size(32, LocalProviderSpec(micro_batch_size=4)) == 4
    with pytest.raises(ProviderError, match="does not divide"):
        micro_batch_size(32, LocalProviderSpec(micro_batch_size=5))


def test_spec_with_the_lr_multiplier_for_a_local_run_is_refused():
    """A local spec that sets the OpenAI-only LR multiplier is a SpecError naming both settings."""
    text = (
        '[finetune]\nbase_model = "some/model"\nlearning_rate_multiplier = 1.0\n[provider]\nkind = "local"\n'
    )

    with pytest.raises(SpecError) as info:
        parse_spec(text, source="local.toml")
    fixed = parse_spec(text.replace("learning_rate_multiplier = 1.0", "learning_rate = 1e-4"))
    message = str(info.value)

    assert fixed.finetune.learning_rate == 1e-4
    assert "finetune.learning_rate_multiplier" in message
    assert "OpenAI-only" in message
    assert "set finetune.learning_rate instead" in message


class _FakeCuda:
    def __init__(self, available: bool, bf16: bool) -> None:
        self._available, self._bf16 = available, bf16

    def is_available(self) -> bool:
        return self._available

    def is_bf16_supported(self) -> bool:
        return self._bf16


def _fake_libs(*, cuda: bool, bf16: bool = True, config: Any = None) -> local.LocalLibraries:
    from types import SimpleNamespace

    torch = SimpleNamespace(cuda=_FakeCuda(cuda, bf16))
    return local.LocalLibraries(
        torch=torch, transformers=None, peft=None, trl=SimpleNamespace(SFTConfig=config), datasets=None
    )


def test_bf16_on_a_gpu_float32_on_cpu():
    """Device "auto" takes a GPU in bf16 where it has bf16, else float32; "cuda" without a GPU is refused."""
    assert local.resolve_device("auto", _fake_libs(cuda=True)) == ("cuda", "bfloat16")
    assert local.resolve_device("cuda", _fake_libs(cuda=True)) == ("cuda", "bfloat16")
    assert local.resolve_device("auto", _fake_libs(cuda=True, bf16=False)) == ("cuda", "float32")
    assert local.resolve_device("auto", _fake_libs(cuda=False)) == ("cpu", "float32")
    assert local.resolve_device("cpu", _fake_libs(cuda=True)) == ("cpu", "float32")
    with pytest.raises(ProviderError, match="no CUDA device"):
        local.resolve_device("cuda", _fake_libs(cuda=False))


def test_trainer_config_follows_device_dtype_and_batch():
    """SFTConfig gets bf16 mixed precision and checkpointing on a GPU, neither on CPU; batch 32 by
    accumulation; the given learning rate, epochs, seed and data-derived length; completion-only loss."""
    seen: list[dict[str, Any]] = []

    def config(**kwargs: Any) -> dict[str, Any]:
        seen.append(kwargs)
        return kwargs

    libs = _fake_libs(cuda=True, config=config)
    common: dict[str, Any] = {"output_dir": "o", "batch_size": 32, "micro_batch": 4, "epochs": 2}
    common["learning_rate"] = 3e-4
    sft_config(libs, **common, max_length=377, device="cuda", dtype="bfloat16", seed=5, evaluate=True)
    sft_config(libs, **common, max_length=377, device="cpu", dtype="float32", seed=5, evaluate=False)
    gpu, cpu = seen

    assert (gpu["bf16"], gpu["use_cpu"], gpu["gradient_checkpointing"]) == (True, False, True)
    assert (cpu["bf16"], cpu["use_cpu"], cpu["gradient_checkpointing"]) == (False, True, False)
    for c in (gpu, cpu):
        assert (c["per_device_train_batch_size"], c["gradient_accumulation_steps"]) == (4, 8)
        assert (c["num_train_epochs"], c["learning_rate"], c["max_length"]) == (2, 3e-4, 377)
        assert (c["seed"], c["data_seed"], c["completion_only_loss"], c["packing"]) == (5, 5, True, False)
    assert (gpu["eval_strategy"], cpu["eval_strategy"]) == ("epoch", "no")


# -- training -----------------------------------------------------------------------------------------


def test_providers_fit_the_protocols(tiny_model: Path, tmp_path: Path):
    """The backend offers chat and fine-tuning (mypy checks the typed assignments)."""
    backend = make_local_backend(
        FinetuneSpec(base_model=str(tiny_model), learning_rate=1e-3, lora=LORA), SETTINGS, tmp_path
    )
    chat: ChatCompleter = backend.chat
    tuner: FineTuner | None = backend.finetune

    assert isinstance(chat, LocalChat)
    assert isinstance(tuner, LocalFineTuner)
    assert backend.identity == f"local(model={tiny_model}, device=cpu, dtype=float32)"


def test_training_loss_falls_and_events_carry_the_curves(trained: tuple[LocalFineTuner, FineTuneJob, Path]):
    """Every optimizer step logs a training loss, every epoch a validation loss, and the loss falls."""
    tuner, job, _ = trained
    events = tuner.finetune_events(job)
    train = [(e.metric("step"), e.metric("train_loss")) for e in events if e.metric("train_loss") is not None]
    valid = [e.metric("valid_loss") for e in events if e.metric("valid_loss") is not None]
    losses = [loss for _, loss in train if loss is not None]

    # 32 examples / batch 8 = 4 optimizer steps per epoch (micro batch 4, 2 accumulation steps), 2 epochs
    assert [step for step, _ in train] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert len(valid) == 2
    assert losses[-1] < losses[0] - 0.1
    assert valid[1] is not None
    assert valid[0] is not None
    assert valid[1] < valid[0]
    assert tuner.finetune_events(job, after=events[-2].id) == (events[-1],)
    assert any("batch 8 = 4 x 2 accumulation steps" in e.message for e in events)


def test_job_state_names_the_adapter(trained: tuple[LocalFineTuner, FineTuneJob, Path]):
    """A finished job's model is the adapter id of the folder the adapter was saved to."""
    tuner, job, out = trained
    state = tuner.poll_finetune(job)
    folder = local.adapter_path(state.model or "")

    assert state.status == "succeeded"
    assert folder is not None
    assert folder.parent == (out / job.id).resolve()
    assert (folder / "adapter_config.json").is_file()
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == LORA.rank
    assert state.trained_tokens is not None
    assert state.trained_tokens > 32 * 2 * 100


def test_rerun_reuses_the_stored_adapter(
    trained: tuple[LocalFineTuner, FineTuneJob, Path], tiny_model: Path, examples: list[Any]
):
    """A new process (a new tuner on the same folder) finds the job by key and resubmitting trains nothing."""
    old, job, out = trained
    model = old.poll_finetune(job).model
    assert model is not None
    weights = local.adapter_path(model) / "adapter_model.safetensors"  # type: ignore[operator]
    stamp = weights.stat().st_mtime_ns
    fresh = LocalFineTuner(out, LORA, SETTINGS)

    found = fresh.find_finetune(KEY)
    again = fresh.submit_finetune(_request(tiny_model, examples))

    assert found == job
    assert again == job
    assert fresh.trainings == 0
    assert fresh.poll_finetune(again).model == model
    assert weights.stat().st_mtime_ns == stamp
    assert fresh.find_finetune("another-key") is None


def test_interrupted_job_reads_as_failed(tmp_path: Path, torch_one_thread: Any):
    """A job left running by a process that ended reads as failed, and find_finetune does not offer it."""
    tuner = LocalFineTuner(tmp_path, LORA, SETTINGS)
    folder = tuner.job_folder("ftjob-local-0123")
    folder.write(job_id="ftjob-local-0123", status="running", keys=[KEY], created=1.0)

    state = tuner.poll_finetune(FineTuneJob(id="ftjob-local-0123"))

    assert state.status == "failed"
    assert state.error is not None
    assert "interrupted" in state.error
    assert tuner.find_finetune(KEY) is None


def test_too_long_examples_are_refused_with_their_count(
    tmp_path: Path, tiny_model: Path, examples: list[Any]
):
    """With max_seq_length set below the data's lengths, submitting refuses and says how many are too long."""
    tuner = LocalFineTuner(tmp_path, LORA, LocalProviderSpec(device="cpu", max_seq_length=50))

    with pytest.raises(
        ProviderError, match=r"40 of 40 fine-tune examples are longer than .*max_seq_length = 50"
    ):
        tuner.submit_finetune(_request(tiny_model, examples))
    assert tuner.trainings == 0


def test_learning_rate_multiplier_is_refused(tmp_path: Path, tiny_model: Path, examples: list[Any]):
    """The OpenAI-only learning-rate multiplier is refused with a message that names the local setting."""
    tuner = LocalFineTuner(tmp_path, LORA, SETTINGS)
    hyper = Hyperparameters(batch_size=8, epochs=1, learning_rate_multiplier=1.0)

    with pytest.raises(ProviderError, match=r"finetune\.learning_rate"):
        tuner.submit_finetune(_request(tiny_model, examples, hyperparameters=hyper))


def test_training_is_seeded(tmp_path: Path, tiny_model: Path, examples: list[Any]):
    """In a fresh folder the same request and seed train the same losses and adapter bytes; another seed
    trains others."""
    hyper = Hyperparameters(batch_size=8, epochs=1, learning_rate=2e-2)

    def train(folder: str, seed: int) -> tuple[list[float | None], bytes]:
        tuner = LocalFineTuner(tmp_path / folder, LORA, SETTINGS)
        request = _request(
            tiny_model, examples, training=tuple(examples[:16]), hyperparameters=hyper, seed=seed
        )
        job = tuner.submit_finetune(request)
        state = tuner.wait(job, timeout=300)
        assert state.status == "succeeded", state.error
        assert tuner.trainings == 1
        losses = [e.metric("train_loss") for e in tuner.finetune_events(job) if e.metric("train_loss")]
        weights = local.adapter_path(state.model or "") / "adapter_model.safetensors"  # type: ignore[operator]
        return losses, weights.read_bytes()

    first, again, other = train("a", 11), train("b", 11), train("c", 12)

    assert len(first[0]) == 2  # 16 examples, batch 8, one epoch
    assert first == again
    assert other[0] != first[0]
    assert other[1] != first[1]


def test_sequence_length_is_the_longest_example(
    trained: tuple[LocalFineTuner, FineTuneJob, Path], sft: Any, examples: list[Any]
):
    """llmrec counts each example's tokens as TRL tokenizes it, and trains with the longest as max_length
    (so nothing is cut)."""
    tokenizer = sft.processing_class
    tuner, job, _ = trained
    longest = max(sequence_lengths(tokenizer, examples[:40]))  # the job's training + validation examples

    assert [len(r["input_ids"]) for r in sft.train_dataset] == sequence_lengths(tokenizer, examples[:16])
    assert any(f"sequences up to {longest} tokens" in e.message for e in tuner.finetune_events(job))


# -- the label mask and the saved adapter -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sft(tiny_model: Path, examples: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An SFTTrainer built with llmrec's own config and records, trained for a few steps in memory."""
    libs = local.load_libraries()
    tokenizer = libs.transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = libs.transformers.AutoModelForCausalLM.from_pretrained(tiny_model)
    config = sft_config(
        libs,
        output_dir=str(tmp_path_factory.mktemp("sft")),
        batch_size=8,
        micro_batch=8,
        epochs=1,
        learning_rate=2e-2,
        max_length=1024,
        device="cpu",
        dtype="float32",
        seed=3,
        evaluate=False,
    )
    libs.transformers.set_seed(3)
    trainer = libs.trl.SFTTrainer(
        model=model,
        args=config,
        train_dataset=libs.datasets.Dataset.from_list([to_record(e) for e in examples[:16]]),
        processing_class=tokenizer,
        peft_config=lora_config(libs, LORA),
    )
    trainer.remove_callback(libs.transformers.PrinterCallback)
    trainer.train()
    return trainer


def test_only_the_assistant_answer_has_labels(sft: Any, examples: list[Any]):
    """On a real tokenized example, exactly the assistant's answer (and its end-of-turn) carries labels."""
    tokenizer = sft.processing_class
    record = to_record(examples[0])
    prompt = tokenizer.apply_chat_template(record["prompt"], add_generation_prompt=True, tokenize=True)
    prompt = list(prompt["input_ids"]) if hasattr(prompt, "keys") else list(prompt)
    batch = sft.data_collator([sft.train_dataset[0]])
    ids = batch["input_ids"][0].tolist()
    labels = batch["labels"][0].tolist()
    labelled = [i for i, label in enumerate(labels) if label != -100]

    assert ids[: len(prompt)] == prompt
    assert labelled == list(range(len(prompt), len(ids)))
    assert [labels[i] for i in labelled] == ids[len(prompt) :]
    assert tokenizer.decode(ids[len(prompt) :]) == examples[0].messages[-1].content + "<|im_end|>\n"


def test_saved_adapter_reloads_with_the_same_logits(
    sft: Any, tiny_model: Path, tmp_path: Path, examples: list[Any]
):
    """The saved adapter, loaded onto a fresh base, gives the in-memory model's logits, not the base's."""
    libs = local.load_libraries()
    torch = libs.torch
    sft.model.save_pretrained(tmp_path / "adapter")
    base = libs.transformers.AutoModelForCausalLM.from_pretrained(tiny_model)
    reloaded = libs.peft.PeftModel.from_pretrained(
        libs.transformers.AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter"
    )
    ids = torch.tensor([sft.train_dataset[1]["input_ids"]])
    sft.model.eval()
    reloaded.eval()
    base.eval()
    with torch.no_grad():
        trained_logits = sft.model(input_ids=ids).logits
        reloaded_logits = reloaded(input_ids=ids).logits
        base_logits = base(input_ids=ids).logits

    assert torch.allclose(trained_logits, reloaded_logits, atol=1e-5)
    assert not torch.allclose(trained_logits, base_logits, atol=1e-2)


# -- generation ---------------------------------------------------------------------------------------


def test_finetuned_answers_differ_from_the_base_model(
    trained: tuple[LocalFineTuner, FineTuneJob, Path], tiny_model: Path, examples: list[Any]
):
    """Greedy answers of the adapter differ from the base model's for at least 90 % of test prompts."""
    tuner, job, _ = trained
    adapter = tuner.poll_finetune(job).model
    assert adapter is not None
    seen: list[tuple[str, int, int, float | None, str]] = []
    chat = LocalChat(
        str(tiny_model),
        SETTINGS,
        progress=lambda s, d, t, *, rate=None, note="": seen.append((s, d, t or 0, rate, note)),
    )
    tests = examples[40:60]

    def ask(model: str) -> dict[str, str]:
        requests = [
            ChatRequest(key=f"u{i}", model=model, messages=e.messages[:-1], max_tokens=16)
            for i, e in enumerate(tests)
        ]
        return {r.key: r.text for r in chat.complete(requests)}

    base, tuned, base_again = ask(str(tiny_model)), ask(adapter), ask(str(tiny_model))
    differ = sum(base[k] != tuned[k] for k in base)

    assert len(base) == len(tuned) == 20
    assert differ >= 18, (differ, base, tuned)
    assert base_again == base  # greedy, and the adapter is switched off for the base model
    assert seen[-1][1:3] == (20, 20)
    assert all(note == "tokens/s" and rate is not None and rate > 0 for *_, rate, note in seen)


def test_answers_report_usage_and_respect_max_tokens(tiny_model: Path, examples: list[Any]):
    """Each answer counts its prompt and completion tokens; max_tokens bounds the completion."""
    chat = LocalChat(str(tiny_model), SETTINGS)
    requests = [
        ChatRequest(key=f"k{i}", model=str(tiny_model), messages=e.messages[:-1], max_tokens=5)
        for i, e in enumerate(examples[:3])
    ]
    results = list(chat.complete(requests))

    assert sorted(r.key for r in results) == ["k0", "k1", "k2"]
    assert all(0 < r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 100 for r in results)
    assert all(r.finish_reason in ("stop", "length") for r in results)


def test_sampling_follows_the_seed(tiny_model: Path, examples: list[Any]):
    """At temperature 1 the same seed gives the same answer, and another seed (almost surely) another."""
    chat = LocalChat(str(tiny_model), SETTINGS)
    messages = examples[0].messages[:-1]

    def ask(seed: int) -> str:
        request = ChatRequest(
            key="s", model=str(tiny_model), messages=messages, temperature=1.0, seed=seed, max_tokens=12
        )
        return next(iter(chat.complete([request]))).text

    assert ask(1) == ask(1)
    assert ask(1) != ask(2)


def test_batched_answers_equal_answers_one_at_a_time(tiny_model: Path, examples: list[Any]):
    """Left padding changes no greedy answer: batches of 8 give what batches of 1 give."""
    batched = LocalChat(str(tiny_model), SETTINGS)
    single = LocalChat(str(tiny_model), LocalProviderSpec(device="cpu", generation_batch_size=1))
    requests = [
        ChatRequest(key=f"b{i}", model=str(tiny_model), messages=e.messages[:-1], max_tokens=12)
        for i, e in enumerate(examples[40:52])
    ]
    lengths = {len(r.messages[-1].content) for r in requests}

    assert len(lengths) > 1  # prompts of several lengths, so some rows are padded
    assert {r.key: r.text for r in batched.complete(requests)} == {
        r.key: r.text for r in single.complete(requests)
    }


# -- the same folder behind an OpenAI-compatible server llmrec did not write ----------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`transformers serve` on CPU with the tiny model folder preloaded; yields its base URL."""
    for name in ("fastapi", "uvicorn"):
        if os.environ.get("CI") == "true":
            importlib.import_module(name)
        else:
            pytest.importorskip(name)
    cli = Path(sys.executable).parent / "transformers"
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # an empty hub cache of its own: transformers 5.17's GET /v1/models scans the cache and fails with
    # 500 where there is none
    cache = tmp_path_factory.mktemp("hub-cache")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(cache)}
    command = [
        str(cli),
        "serve",
        str(tiny_model),
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url + "/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_transformers_serve_answers_like_local_chat(served: str, tiny_model: Path, examples: list[Any]):
    """Over real HTTP, `transformers serve` gives the tiny model's greedy answer that LocalChat gives."""
    import openai

    messages = examples[45].messages[:-1]
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=0, timeout=60)
    response = client.chat.completions.create(
        model=str(tiny_model),
        messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc,unused-ignore]
        max_tokens=16,  # transformers 5.17's serve ignores max_completion_tokens; 5.24 reads both
        temperature=0.0,
    )
    chat = LocalChat(str(tiny_model), SETTINGS)
    (local_answer,) = chat.complete(
        [ChatRequest(key="k", model=str(tiny_model), messages=messages, max_tokens=16)]
    )

    assert response.choices[0].message.content == local_answer.text
    assert response.usage is not None
    assert response.usage.prompt_tokens == local_answer.usage.prompt_tokens


def test_transformers_serve_through_the_openai_compatible_provider(
    served: str, tiny_model: Path, examples: list[Any]
):
    """llmrec's OpenAI-compatible provider (OpenAIChat at the server's base URL) gets the greedy answers
    LocalChat gives, for several test users at once."""
    from llmrec.providers.openai import OpenAIChat
    from llmrec.spec import OpenAIProviderSpec

    remote = OpenAIChat(
        OpenAIProviderSpec(concurrency=2, max_retries=0, timeout_s=60), api_key="unused", base_url=served
    )
    requests = [
        ChatRequest(key=f"u{i}", model=str(tiny_model), messages=e.messages[:-1], max_tokens=16)
        for i, e in enumerate(examples[40:46])
    ]
    over_http = {r.key: r for r in remote.complete(requests)}
    here = {r.key: r for r in LocalChat(str(tiny_model), SETTINGS).complete(requests)}
    # llmrec sends max_completion_tokens, which transformers 5.17's server ignores (it generates on to its
    # own limit); 5.24 reads it
    honoured = all(r.usage.completion_tokens <= 16 for r in over_http.values())

    assert over_http.keys() == here.keys()
    assert {k: r.usage.prompt_tokens for k, r in over_http.items()} == {
        k: r.usage.prompt_tokens for k, r in here.items()
    }
    if honoured:
        assert {k: r.text for k, r in over_http.items()} == {k: r.text for k, r in here.items()}
    else:
        assert all(over_http[k].text.startswith(here[k].text) for k in here)


SERVED_SPEC = """
[experiment]
name = "served"
seed = 7

[dataset.synthetic]
users = 3000
movies = 400
mean_ratings = 60
tastes = 8

[sampling]
users = 120

[[variant]]
name = "profileData50"
watch_factor = 0.5
neighbor_min_stars = 5
model = "{model}"

[finetune]
base_model = "{model}"

[provider]
kind = "openai"

[provider.openai]
base_url = "{url}"
concurrency = 2
max_retries = 1

[inference]
max_completion_tokens = 24

[evaluation]
baselines = []
resamples = 20
permutations = 20
"""


def test_llmrec_run_zero_shot_against_transformers_serve(served: str, tiny_model: Path, tmp_path: Path):
    """`llmrec run` with the OpenAI-compatible provider at `transformers serve`: the tiny model's zero-shot
    answers for every test user, parsed and scored into a report (the server offers no fine-tuning)."""
    spec = SERVED_SPEC.replace("{model}", str(tiny_model)).replace("{url}", served)
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    env = {**os.environ, "OPENAI_API_KEY": "unused", "OMP_NUM_THREADS": "1"}
    env.pop("OPENAI_BASE_URL", None)
    # --allow-small: 14 test users, and a run against a compatible server counts as paid
    args = [sys.executable, "-m", "llmrec.cli", "run", "spec.toml", "--runs", "runs", "--out", "out"]
    args += ["--quiet", "--allow-small"]

    done = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    baseline = [r for r in records if r["role"] == "baseline"]
    assert len(baseline) >= 10
    assert all(r["raw_text"] for r in baseline)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["provider"] == "openai"
    assert served in manifest["backend"]
    assert manifest["usage"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results
    assert (tmp_path / "out" / "index.html").exists()


def test_cancel_stops_training_and_saves_nothing(tmp_path: Path, tiny_model: Path, examples: list[Any]):
    """A cancelled job stops at the next step, saves no adapter, and a rerun does not reuse it."""
    tuner = LocalFineTuner(tmp_path, LORA, SETTINGS)
    request = _request(tiny_model, examples, hyperparameters=Hyperparameters(batch_size=4, epochs=3))
    job = tuner.submit_finetune(request)

    state = tuner.cancel_finetune(job)

    assert state.status == "cancelled"
    assert state.model is None
    assert not tuner.job_folder(job).adapter_dir.exists()
    assert tuner.find_finetune(KEY) is None


def test_a_model_without_a_chat_template_is_refused(tmp_path: Path, tiny_model: Path, examples: list[Any]):
    """The prompts come from the tokenizer's chat template: a model folder without one is refused by
    training and by generation, with a ProviderError naming the model."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    (bare / "chat_template.jinja").unlink()
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    tuner = LocalFineTuner(tmp_path / "runs", LORA, SETTINGS)
    request = ChatRequest(key="k", model=str(bare), messages=examples[0].messages[:-1], max_tokens=4)

    with pytest.raises(ProviderError, match="has no chat template"):
        tuner.submit_finetune(_request(bare, examples))
    with pytest.raises(ProviderError, match="has no chat template"):
        list(LocalChat(str(bare), SETTINGS).complete([request]))
    assert tuner.trainings == 0


def test_unknown_base_model_is_a_provider_error(tmp_path: Path, torch_one_thread: Any, examples: list[Any]):
    """A base model folder that does not exist is refused at submission with a ProviderError naming it."""
    tuner = LocalFineTuner(tmp_path, LORA, SETTINGS)

    with pytest.raises(ProviderError, match="cannot load the tokenizer of"):
        tuner.submit_finetune(_request(tmp_path / "no-such-model", examples))
