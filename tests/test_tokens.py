"""
Token counts: model -> encoding, exact text counts (against tiktoken), the cookbook's chat rule and
its published figures for the toy fine-tune file.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from importlib import import_module, resources
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmrec.estimate import default_epochs
from llmrec.providers.base import ChatMessage, FineTuneExample
from llmrec.tokens import (
    count_assistant,
    count_chat,
    count_example,
    count_text,
    count_training,
    encoding_for_model,
    lookup_encoding,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOY = SHARED / "data" / "openai" / "toy_chat_fine_tuning.jsonl"
"""The cookbook's toy fine-tune file (read in place, never copied; see SOURCE.md beside it)."""


def require(name: str) -> ModuleType:
    """
    Import a test dependency: under CI=true a missing one fails the test, elsewhere it skips.
    """
    if os.environ.get("CI") == "true":
        return import_module(name)
    return pytest.importorskip(name)


# -- model -> encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-mini-2025-04-14", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme:llmrec:AbC123", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme:llmrec:AbC123:ckpt-step-40", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("ft:gpt-3.5-turbo-0125:acme::xyz", "cl100k_base"),
    ],
)
def test_known_models_map_to_their_encoding(model: str, encoding: str) -> None:
    """Every recognised family gets its encoding and is flagged as known."""
    choice = lookup_encoding(model)

    assert choice.encoding == encoding
    assert choice.known
    assert encoding_for_model(model) == encoding


@pytest.mark.parametrize(
    "model", ["fake-llm", "Qwen/Qwen2.5-7B-Instruct", "omni-moderation-latest", "gpt-40"]
)
def test_unknown_model_falls_back_to_o200k_with_flag(model: str) -> None:
    """An unrecognised model is counted with o200k_base and flagged as unknown."""
    choice = lookup_encoding(model)

    assert choice.encoding == "o200k_base"
    assert not choice.known


# -- exact text counts ------------------------------------------------------------------------------------


def test_count_text_known_values() -> None:
    """Counts agree with token ids worked out from the published vocabularies."""
    assert count_text("", "o200k_base") == 0
    assert count_text("Hello world", "o200k_base") == 2
    assert count_text("Hello world", "cl100k_base") == 2
    # "<|endoftext|>" in a prompt is plain text, never the special token.
    assert count_text("<|endoftext|>", "o200k_base") > 1


def test_count_text_rejects_unknown_encoding() -> None:
    """An encoding the package does not embed is a ValueError naming it."""
    with pytest.raises(ValueError, match="unknown encoding 'p50k_base'"):
        count_text("hi", "p50k_base")


_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


@pytest.fixture(scope="module")
def tiktoken_encodings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Callable[[str], int]]]:
    """
    tiktoken as the reference counter, offline: its cache is filled from the files bpe-openai embeds
    (tiktoken checks their sha256 against the ones it expects before use).
    """
    tiktoken = require("tiktoken")
    cache = tmp_path_factory.mktemp("tiktoken")
    for name, url in _URLS.items():
        data = resources.files("bpe_openai.data").joinpath(f"{name}.tiktoken.gz").read_bytes()
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(gzip.decompress(data))
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        encodings = {name: tiktoken.get_encoding(name) for name in _URLS}
        yield {name: functools.partial(_count_with, enc) for name, enc in encodings.items()}
    finally:
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


_TRICKY = [
    "The Shawshank Redemption (1994)\n2. Pulp Fiction (1994)",
    "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
    "   leading spaces and trailing   \n\n\n",
    "don't can't WE'LL I'M they're",
    "1234567890 12 345 6789",
    "東京物語 (1953) — Ozu\tTab",
    '{"movies": ["Alien (1979)", "Aliens (1986)"]}',
    "emoji 🎬🍿 and \u200b zero width",
    "<|endoftext|> <|endofprompt|>",
    "\r\n\r\nline\rbreaks",
]


@pytest.mark.parametrize("text", _TRICKY)
@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_count_text_matches_tiktoken_on_tricky_text(
    tiktoken_encodings: dict[str, Callable[[str], int]], encoding: str, text: str
) -> None:
    """Whitespace runs, contractions, digits, accents, CJK, emoji, special-token text: as in tiktoken."""
    assert count_text(text, encoding) == tiktoken_encodings[encoding](text)


@given(text=st.text(max_size=200))
def test_count_text_matches_tiktoken_on_any_text(
    tiktoken_encodings: dict[str, Callable[[str], int]], text: str
) -> None:
    """For any text, both encodings give tiktoken's count."""
    for encoding, reference in tiktoken_encodings.items():
        assert count_text(text, encoding) == reference(text)


# -- chats and examples -----------------------------------------------------------------------------------


def _example(*pairs: tuple[str, str]) -> FineTuneExample:
    return FineTuneExample(messages=tuple(ChatMessage(role=r, content=c) for r, c in pairs))  # type: ignore[arg-type]


def test_count_chat_follows_the_cookbook_rule() -> None:
    """3 per message + role + content tokens, 3 for the reply priming: two one-token messages make 13."""
    assert count_text("system", "o200k_base") == 1
    assert count_text("user", "o200k_base") == 1
    assert count_text("a", "o200k_base") == 1
    messages = (ChatMessage(role="system", content="a"), ChatMessage(role="user", content="a"))

    assert count_chat(messages, "gpt-4o-mini") == 3 + (3 + 1 + 1) * 2
    assert count_chat((), "gpt-4o-mini") == 3


def test_count_chat_mappings_count_names_and_skip_non_text() -> None:
    """A JSONL-style message counts every string value, 1 more for a name, and no weight."""
    plain = [{"role": "user", "content": "a"}]
    named = [{"role": "user", "content": "a", "name": "bob"}]
    weighted = [{"role": "assistant", "content": "a", "weight": 0}]

    assert count_chat(plain, "gpt-4o-mini") == 8
    assert count_chat(named, "gpt-4o-mini") == 8 + count_text("bob", "o200k_base") + 1
    assert count_chat(weighted, "gpt-4o-mini") == 8


def test_count_example_assistant_and_training() -> None:
    """An example counts as its chat, its answer as the assistant content; training caps each example."""
    example = _example(("system", "a"), ("user", "a"), ("assistant", "Hello world"))

    assert count_example(example) == 3 + 5 + 5 + (3 + 1 + 2)
    assert count_assistant(example) == 2
    assert count_training([example, example]) == 2 * 19
    assert count_training([example, example], max_per_example=10) == 20


def test_chat_message_and_mapping_count_the_same() -> None:
    """A ChatMessage and the equivalent mapping give the same count."""
    text = "1. Heat (1995)\n2. Ronin (1998)"

    assert count_chat([ChatMessage("assistant", text)], "gpt-4o") == count_chat(
        [{"role": "assistant", "content": text}], "gpt-4o"
    )


# -- the cookbook's published figures ---------------------------------------------------------------------


@pytest.fixture
def toy() -> list[FineTuneExample]:
    """
    The cookbook's toy fine-tune file, read from the shared folder (skips when absent).
    """
    if not TOY.is_file():
        pytest.skip(f"{TOY} is absent")
    rows = [json.loads(line) for line in TOY.read_text(encoding="utf-8").splitlines()]
    return [_example(*((m["role"], m["content"]) for m in row["messages"])) for row in rows]


def test_cookbook_toy_file_figures(toy: list[FineTuneExample]) -> None:
    """
    The data-prep notebook's printed figures (cl100k_base): total tokens per example min / max 26, 8032,
    mean / median 1648.4, 45.0, p5 / p95 (its 0.1 / 0.9 quantiles) 26.8, 4863.6; assistant tokens
    4, 8000, 1610.2, 10.0, 6.0, 4811.2; one example over 4096; ~4306 billed tokens; 20 default epochs;
    ~86120 tokens charged.
    """
    totals = [count_example(e, "gpt-3.5-turbo") for e in toy]
    answers = [count_assistant(e, "gpt-3.5-turbo") for e in toy]
    billed = count_training(toy, "gpt-3.5-turbo", max_per_example=4096)

    assert totals == [45, 111, 26, 28, 8032]
    assert (min(totals), max(totals)) == (26, 8032)
    assert (np.mean(totals), np.median(totals)) == pytest.approx((1648.4, 45.0))
    assert (np.quantile(totals, 0.1), np.quantile(totals, 0.9)) == pytest.approx((26.8, 4863.6))
    assert (min(answers), max(answers)) == (4, 8000)
    assert (np.mean(answers), np.median(answers)) == pytest.approx((1610.2, 10.0))
    assert (np.quantile(answers, 0.1), np.quantile(answers, 0.9)) == pytest.approx((6.0, 4811.2))
    assert sum(t > 4096 for t in totals) == 1
    assert billed == 4306
    assert default_epochs(len(toy)) == 20
    assert default_epochs(len(toy)) * billed == 86120


def _count_with(encoding: Any, text: str) -> int:
    return len(encoding.encode_ordinary(text))
