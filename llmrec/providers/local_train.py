"""
LoRA training for the local provider: TRL's ``SFTTrainer`` with a PEFT ``LoraConfig``.

The examples become conversational prompt-completion records (``prompt``: the system and user
turns, ``completion``: the assistant's answer), so TRL computes the loss on the completion only
(``completion_only_loss``), whatever the chat template marks. The batch size is reached by gradient
accumulation over micro batches; the longest sequence comes from the data, and nothing is ever
truncated (an explicit limit that examples exceed is refused before training). bf16 on a GPU,
float32 on CPU; seeded. Every optimizer step and every epoch's validation loss become job events.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmrec.errors import ProviderError
from llmrec.providers.base import FineTuneExample, FineTuneRequest
from llmrec.spec import LocalProviderSpec, LoraSpec

if TYPE_CHECKING:
    from llmrec.providers.local import JobFolder, LocalLibraries

__all__ = ["check_request", "lora_config", "sequence_lengths", "sft_config", "to_record", "train"]


def to_record(example: FineTuneExample) -> dict[str, list[dict[str, str]]]:
    """
    One example as a conversational prompt-completion record (the last message is the completion).

    Raises:
        ProviderError: when the example does not end with an assistant message.
    """
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        msg = "a fine-tune example must end with the assistant's answer after at least one prompt message"
        raise ProviderError(msg)
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _tokenizer(libs: LocalLibraries, name: str) -> Any:
    try:
        tokenizer = libs.transformers.AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        msg = f"cannot load the tokenizer of {name!r}: {str(exc).splitlines()[0]}"
        raise ProviderError(msg) from None
    if tokenizer.chat_template is None:
        msg = f"model {name!r} has no chat template (fine-tune an instruction-tuned model)"
        raise ProviderError(msg)
    return tokenizer


def sequence_lengths(tokenizer: Any, examples: Sequence[FineTuneExample]) -> list[int]:
    """
    Tokens of each example as trained on (prompt and completion through the chat template).
    """
    out = []
    for example in examples:
        record = to_record(example)
        encoded = tokenizer.apply_chat_template(
            record["prompt"] + record["completion"], tokenize=True, return_dict=True
        )
        out.append(len(encoded["input_ids"]))
    return out


def check_request(
    libs: LocalLibraries, request: FineTuneRequest, settings: LocalProviderSpec
) -> tuple[int, int]:
    """
    Check a request before training; returns the sequence length to train with (the set limit, else
    the longest example) and the tokens of one epoch of the training examples.

    Raises:
        ProviderError: when there are no training examples, an example is malformed, the tokenizer
            cannot be loaded, or examples exceed ``provider.local.max_seq_length``.
    """
    if not request.training:
        msg = "no training examples"
        raise ProviderError(msg)
    tokenizer = _tokenizer(libs, request.base_model)
    lengths = sequence_lengths(tokenizer, (*request.training, *request.validation))
    longest = max(lengths)
    epoch_tokens = sum(lengths[: len(request.training)])
    limit = settings.max_seq_length
    if limit is None:
        return longest, epoch_tokens
    over = sum(1 for n in lengths if n > limit)
    if over:
        msg = (
            f"{over} of {len(lengths)} fine-tune examples are longer than provider.local.max_seq_length = "
            f"{limit} tokens (the longest has {longest}); llmrec never truncates: raise the limit or unset it"
        )
        raise ProviderError(msg)
    return limit, epoch_tokens


def lora_config(libs: LocalLibraries, lora: LoraSpec) -> Any:
    """
    The PEFT ``LoraConfig`` of ``[finetune.lora]``.
    """
    targets: Any = (
        "all-linear" if tuple(lora.target_modules) == ("all-linear",) else list(lora.target_modules)
    )
    return libs.peft.LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def sft_config(
    libs: LocalLibraries,
    *,
    output_dir: str,
    batch_size: int,
    micro_batch: int,
    epochs: int,
    learning_rate: float,
    max_length: int,
    device: str,
    dtype: str,
    seed: int,
    evaluate: bool,
) -> Any:
    """
    TRL's ``SFTConfig`` for one job.
    """
    config_class = libs.trl.SFTConfig
    fields = getattr(config_class, "__dataclass_fields__", {})
    # transformers 5.2x renamed gradient_checkpointing (TRL defaults it to True) to activation_checkpointing.
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    )
    return config_class(
        output_dir=output_dir,
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=batch_size // micro_batch,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="no",
        report_to="none",
        bf16=dtype == "bfloat16",
        fp16=False,
        use_cpu=device == "cpu",
        seed=seed,
        data_seed=seed,
        max_length=max_length,
        completion_only_loss=True,
        packing=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **{checkpointing: device == "cuda"},
    )


def _callback(libs: LocalLibraries, folder: JobFolder, cancel: threading.Event, batch_size: int) -> Any:
    base = libs.transformers.TrainerCallback
    start = time.perf_counter()

    class _Events(base):  # type: ignore[misc, valid-type]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            elapsed = time.perf_counter() - start
            rate = state.global_step * batch_size / elapsed if elapsed > 0 else None
            folder.write(step=int(state.global_step), max_steps=int(state.max_steps), examples_per_s=rate)
            if cancel.is_set():
                control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
            logs = logs or {}
            step = int(state.global_step)
            epoch = float(logs.get("epoch", state.epoch or 0.0))
            if "eval_loss" in logs:
                loss = float(logs["eval_loss"])
                folder.event(
                    f"epoch {epoch:g}: validation loss {loss:.4f}",
                    (("step", step), ("epoch", epoch), ("valid_loss", loss)),
                )
            elif "loss" in logs:
                loss = float(logs["loss"])
                metrics = [("step", step), ("epoch", epoch), ("train_loss", loss)]
                if "learning_rate" in logs:
                    metrics.append(("learning_rate", float(logs["learning_rate"])))
                folder.event(f"step {step}: training loss {loss:.4f}", metrics)
            return control

    return _Events()


def train(
    *,
    libs: LocalLibraries,
    folder: JobFolder,
    request: FineTuneRequest,
    lora: LoraSpec,
    micro_batch: int,
    max_length: int,
    device: str,
    dtype: str,
    learning_rate: float,
    epoch_tokens: int,
    cancel: threading.Event,
) -> None:
    """
    Train one job into its folder (runs in the job's thread); every outcome, failures included, ends
    in the folder's state, never as an exception.
    """
    try:
        _train(
            libs=libs,
            folder=folder,
            request=request,
            lora=lora,
            micro_batch=micro_batch,
            max_length=max_length,
            device=device,
            dtype=dtype,
            learning_rate=learning_rate,
            epoch_tokens=epoch_tokens,
            cancel=cancel,
        )
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        folder.write(status="failed", error=error, finished=time.time())
        folder.event(f"training failed: {error}", level="error")
    finally:
        gc.collect()
        if device == "cuda":
            libs.torch.cuda.empty_cache()


def _train(
    *,
    libs: LocalLibraries,
    folder: JobFolder,
    request: FineTuneRequest,
    lora: LoraSpec,
    micro_batch: int,
    max_length: int,
    device: str,
    dtype: str,
    learning_rate: float,
    epoch_tokens: int,
    cancel: threading.Event,
) -> None:
    from llmrec.providers.local import adapter_id

    torch, tf = libs.torch, libs.transformers
    hp = request.hyperparameters
    seed = request.seed if request.seed is not None else 0
    folder.write(status="running", started=time.time())
    tokenizer = _tokenizer(libs, request.base_model)
    tf.set_seed(seed)  # before the model: PEFT draws the adapter's initial weights
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(request.base_model, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        msg = f"cannot load model {request.base_model!r}: {str(exc).splitlines()[0]}"
        raise ProviderError(msg) from None
    train_set = libs.datasets.Dataset.from_list([to_record(e) for e in request.training])
    valid_set = (
        libs.datasets.Dataset.from_list([to_record(e) for e in request.validation])
        if request.validation
        else None
    )
    config = sft_config(
        libs,
        output_dir=str(folder.folder / "trainer"),
        batch_size=hp.batch_size,
        micro_batch=micro_batch,
        epochs=hp.epochs,
        learning_rate=learning_rate,
        max_length=max_length,
        device=device,
        dtype=dtype,
        seed=seed,
        evaluate=valid_set is not None,
    )
    folder.event(
        f"training {request.base_model} on {device} ({dtype}): {len(request.training)} examples, "
        f"batch {hp.batch_size} = {micro_batch} x {hp.batch_size // micro_batch} accumulation steps, "
        f"{hp.epochs} epochs, learning rate {learning_rate:g}, sequences up to {max_length} tokens"
    )
    trainer = libs.trl.SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_set,
        eval_dataset=valid_set,
        processing_class=tokenizer,
        peft_config=lora_config(libs, lora),
        callbacks=[_callback(libs, folder, cancel, hp.batch_size)],
    )
    trainer.remove_callback(libs.transformers.PrinterCallback)  # the job's events say it instead
    output = trainer.train()
    if cancel.is_set():
        folder.write(status="cancelled", error="cancelled", finished=time.time())
        folder.event("cancelled", level="warning")
        return
    adapter = folder.adapter_dir
    trainer.model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    tokens = epoch_tokens * hp.epochs
    metrics = output.metrics
    rate = metrics.get("train_samples_per_second")
    folder.write(
        status="succeeded",
        model=adapter_id(adapter.resolve()),
        trained_tokens=tokens,
        examples_per_s=float(rate) if rate is not None else None,
        train_runtime_s=float(metrics.get("train_runtime", 0.0)),
        finished=time.time(),
    )
    folder.event(
        f"saved the adapter to {adapter} ({metrics.get('train_runtime', 0.0):.1f} s)",
        (("examples_per_s", float(rate or 0.0)), ("trained_tokens", float(tokens))),
    )
