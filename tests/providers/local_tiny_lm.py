"""
A tiny causal LM built offline for the local-provider tests: random weights from a config, and a
byte-level BPE tokenizer trained on the given texts, with a ChatML chat template. No download.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmrec.providers.base import FineTuneExample

DEMO_SPEC = Path(__file__).resolve().parents[2] / "specs" / "demo.toml"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>"]


def build_tiny_model(
    folder: Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 1200,
    hidden_size: int = 48,
    layers: int = 2,
    intermediate_size: int | None = None,
    heads: int = 4,
    kv_heads: int = 2,
    vocab: int | None = None,
    arch: str = "llama",
    seed: int = 0,
) -> Path:
    """
    Write a real model folder (config, safetensors weights, tokenizer) to ``folder`` and return it.

    ``arch`` is "llama" or "qwen2"; ``vocab`` (at least the tokenizer's) sets the embedding rows, so a
    benchmark can give the model a real model's shape while the tokenizer stays small.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="<|im_end|>", bos_token=None, unk_token=None
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    config = config_class(
        vocab_size=max(vocab or 0, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def demo_examples(n: int, seed: int = 7) -> list[FineTuneExample]:
    """
    ``n`` demo-like fine-tune conversations: the demo spec's prompt, ten profile titles and ten
    answer titles drawn (seeded) from the demo spec's synthetic catalogue.
    """
    import numpy as np

    import llmrec
    from llmrec.prompts import build_example

    spec = llmrec.parse_spec(DEMO_SPEC.read_text(encoding="utf-8"))
    assert spec.dataset.synthetic is not None
    movies = llmrec.generate_synthetic(spec.dataset.synthetic, 7).movies
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        picks = rng.choice(len(movies.ids), size=20, replace=False)
        titles = [movies.display(int(movies.ids[i])) for i in picks]
        out.append(build_example(titles[:10], titles[10:], spec.prompt))
    return out


def tokenizer_texts(examples: Iterable[FineTuneExample]) -> list[str]:
    """
    The texts a tiny tokenizer is trained on: every message of the examples.
    """
    return [m.content for e in examples for m in e.messages]
