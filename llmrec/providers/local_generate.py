"""
Batched generation for the local provider: models loaded once, adapters on top of their base.

Prompts are tokenized the way TRL tokenizes a training prompt (the tokenizer's chat template with
``add_generation_prompt=True``), left-padded and generated in batches of ``generation_batch_size``.
Temperature 0 is greedy decoding; a higher temperature samples (no top-k / top-p cut, as OpenAI's
temperature) with the request's seed. The model's own generation defaults (repetition penalty,
top-k, ...) are not applied: only the request decides how to decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from llmrec.errors import ProviderError
from llmrec.providers.base import ChatRequest, ChatResult, Progress, Usage

if TYPE_CHECKING:
    from llmrec.providers.local import LocalLibraries

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "ModelPool", "adapter_base_model", "generate"]

DEFAULT_MAX_NEW_TOKENS = 512
"""New tokens per answer when a request sets no ``max_tokens``."""


def adapter_base_model(folder: Path) -> str:
    """
    The base model an adapter folder was trained on (``base_model_name_or_path`` in its config).

    Raises:
        ProviderError: when the folder holds no adapter.
    """
    config = folder / "adapter_config.json"
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        msg = f"{config}: not a saved LoRA adapter ({exc})"
        raise ProviderError(msg) from None
    if not isinstance(base, str) or not base:
        msg = f"{config}: no base_model_name_or_path"
        raise ProviderError(msg)
    return base


@attrs.define(eq=False)
class _Loaded:
    tokenizer: Any
    model: Any
    eos_ids: list[int]
    peft: Any = None
    adapters: dict[str, str] = attrs.field(factory=dict)
    """Adapter folder -> adapter name inside ``peft``."""


class ModelPool:
    """
    Base models loaded on first use and kept; adapters loaded into a PEFT wrapper around their base.
    """

    def __init__(self, libs: LocalLibraries, device: str, dtype: str) -> None:
        self._libs = libs
        self._device = device
        self._dtype = dtype
        self._bases: dict[str, _Loaded] = {}

    @property
    def libs(self) -> LocalLibraries:
        """
        The third-party modules.
        """
        return self._libs

    @property
    def device(self) -> str:
        """
        Where the models run.
        """
        return self._device

    def base(self, name: str) -> _Loaded:
        """
        The loaded base model ``name`` (loading it on first use).

        Raises:
            ProviderError: when the model or its tokenizer cannot be loaded.
        """
        if name not in self._bases:
            tf = self._libs.transformers
            torch = self._libs.torch
            try:
                tokenizer = tf.AutoTokenizer.from_pretrained(name)
                model = tf.AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, self._dtype))
            except (OSError, ValueError) as exc:
                msg = f"cannot load model {name!r}: {str(exc).splitlines()[0]}"
                raise ProviderError(msg) from None
            if tokenizer.chat_template is None:
                msg = f"model {name!r} has no chat template (an instruction-tuned model is needed)"
                raise ProviderError(msg)
            tokenizer.padding_side = "left"
            model.to(self._device)
            model.eval()
            eos = model.generation_config.eos_token_id
            eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
            if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
                eos_ids.append(tokenizer.eos_token_id)
            if not eos_ids:
                msg = f"model {name!r} has no end-of-sequence token"
                raise ProviderError(msg)
            self._bases[name] = _Loaded(tokenizer=tokenizer, model=model, eos_ids=eos_ids)
        return self._bases[name]

    @contextlib.contextmanager
    def model(self, model_id: str) -> Iterator[tuple[_Loaded, Any]]:
        """
        The loaded base and the module to generate with for a request's model id (an adapter is
        switched on, and the base answers with every adapter switched off).
        """
        from llmrec.providers.local import adapter_path

        folder = adapter_path(model_id)
        if folder is None:
            loaded = self.base(model_id)
            if loaded.peft is None:
                yield loaded, loaded.model
            else:
                with loaded.peft.disable_adapter():
                    yield loaded, loaded.peft
            return
        loaded = self.base(adapter_base_model(folder))
        key = str(folder.resolve())
        if key not in loaded.adapters:
            name = "a" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
            peft = self._libs.peft
            try:
                if loaded.peft is None:
                    loaded.peft = peft.PeftModel.from_pretrained(loaded.model, str(folder), adapter_name=name)
                    loaded.peft.eval()
                else:
                    loaded.peft.load_adapter(str(folder), adapter_name=name)
            except (OSError, ValueError) as exc:
                msg = f"cannot load adapter {folder}: {str(exc).splitlines()[0]}"
                raise ProviderError(msg) from None
            loaded.adapters[key] = name
        loaded.peft.set_adapter(loaded.adapters[key])
        yield loaded, loaded.peft


def _prompt_ids(loaded: _Loaded, request: ChatRequest) -> list[int]:
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    encoded = loaded.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _generate_chunk(
    libs: LocalLibraries, loaded: _Loaded, module: Any, requests: Sequence[ChatRequest], device: str
) -> tuple[list[ChatResult], int]:
    torch = libs.torch
    tf = libs.transformers
    first = requests[0]
    prompts = [_prompt_ids(loaded, r) for r in requests]
    width = max(len(p) for p in prompts)
    pad = loaded.tokenizer.pad_token_id
    pad = loaded.eos_ids[0] if pad is None else pad
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    sample = bool(first.temperature)
    options: dict[str, Any] = {
        "max_new_tokens": first.max_tokens or DEFAULT_MAX_NEW_TOKENS,
        "do_sample": sample,
        "pad_token_id": pad,
        "eos_token_id": loaded.eos_ids,
        "repetition_penalty": 1.0,
    }
    if sample:
        options.update(temperature=first.temperature, top_k=0, top_p=1.0)
        torch.manual_seed(first.seed or 0)
    config = tf.GenerationConfig(**options)
    with torch.inference_mode():
        out = module.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    results = []
    generated = 0
    eos = set(loaded.eos_ids)
    for r, p, row in zip(requests, prompts, out[:, width:].tolist(), strict=True):
        end = next((i for i, t in enumerate(row) if t in eos), None)
        tokens = row if end is None else row[:end]
        text = loaded.tokenizer.decode(tokens, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, r.stop)
        completion = len(tokens) + (1 if end is not None else 0)
        generated += completion
        results.append(
            ChatResult(
                key=r.key,
                model=r.model,
                text=text,
                usage=Usage(prompt_tokens=len(p), completion_tokens=completion),
                finish_reason="stop" if end is not None or stopped else "length",
            )
        )
    return results, generated


def generate(
    pool: ModelPool, requests: Sequence[ChatRequest], *, batch_size: int, progress: Progress
) -> Iterator[ChatResult]:
    """
    Answer ``requests`` in batches of requests that decode alike (model, temperature, seed, length),
    each batch of similar prompt lengths; yields results batch by batch and reports tokens/s.

    Raises:
        ProviderError: when a model or adapter cannot be loaded.
    """
    groups: dict[tuple[Any, ...], list[ChatRequest]] = {}
    for r in requests:
        sample_seed = r.seed if r.temperature else None
        groups.setdefault((r.model, r.temperature or 0.0, sample_seed, r.max_tokens), []).append(r)
    total = len(requests)
    done = 0
    tokens = 0
    start = time.perf_counter()
    for (model_id, *_), members in groups.items():
        members = sorted(members, key=lambda r: sum(len(m.content) for m in r.messages))
        for i in range(0, len(members), batch_size):
            with pool.model(model_id) as (loaded, module):
                results, generated = _generate_chunk(
                    pool.libs, loaded, module, members[i : i + batch_size], pool.device
                )
            done += len(results)
            tokens += generated
            elapsed = time.perf_counter() - start
            rate = tokens / elapsed if elapsed > 0 else None
            progress("local generation", done, total, rate=rate, note="tokens/s")
            yield from results
