"""
Exact, offline token counts for OpenAI models: text, chat prompts and fine-tune examples.

The byte-pair encodings come from the ``bpe-openai`` package, which ships ``o200k_base`` and
``cl100k_base`` inside its wheel (the same files tiktoken downloads on first use, byte for byte), so
counting never touches the network. A text's count is exact: the number of tokens the model's
encoding gives it, special-token text such as ``<|endoftext|>`` counted as plain text.

A chat's count follows OpenAI's cookbook rule ("How to count tokens with tiktoken", and the fine-tune
data-prep notebook, which calls it "not exact!"): 3 tokens per message, plus the tokens of every
value in the message (role and content), plus 1 per ``name``, plus 3 that prime the reply. For the
prompt of a chat completion this is what the API reports as ``prompt_tokens``; for a fine-tune
example it is the cookbook's estimate of the tokens billed per epoch.
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal, Protocol, cast, get_args

import attrs

from llmrec.providers.base import ChatMessage, FineTuneExample

__all__ = [
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "TOKENS_REPLY_PRIMING",
    "EncodingChoice",
    "EncodingName",
    "count_assistant",
    "count_chat",
    "count_example",
    "count_text",
    "count_training",
    "counts_remembered",
    "encoding_for_model",
    "lookup_encoding",
]

EncodingName = Literal["o200k_base", "cl100k_base"]

TOKENS_PER_MESSAGE = 3
"""Tokens every chat message costs besides its values (the cookbook's figure for gpt-3.5 and later)."""
TOKENS_PER_NAME = 1
"""Extra tokens for a message's ``name``."""
TOKENS_REPLY_PRIMING = 3
"""Tokens that prime the assistant's reply (``<|start|>assistant<|message|>``), once per chat."""

_ENCODINGS: tuple[str, ...] = get_args(EncodingName)

# Model families by encoding, checked in order (gpt-4o / gpt-4.1 / gpt-4.5 before the gpt-4 prefix).
_O200K_FAMILIES = ("gpt-4o", "chatgpt-4o", r"gpt-4\.1", r"gpt-4\.5", "gpt-5", "gpt-oss", r"o\d")
_CL100K_FAMILIES = (
    "gpt-4",
    r"gpt-3\.5",
    "gpt-35",
    "text-embedding-3",
    "text-embedding-ada-002",
    "davinci-002",
    "babbage-002",
)
_O200K = re.compile(rf"^({'|'.join(_O200K_FAMILIES)})(\b|[-.])")
_CL100K = re.compile(rf"^({'|'.join(_CL100K_FAMILIES)})(\b|[-.])")


@attrs.frozen
class EncodingChoice:
    """
    The encoding a model uses, and whether the model was recognised (``known``); an unrecognised
    model gets ``o200k_base``, the encoding of every current OpenAI chat model, with ``known=False``.
    """

    encoding: EncodingName
    known: bool


def lookup_encoding(model: str) -> EncodingChoice:
    """
    The encoding for a model name, including fine-tuned ids such as
    ``ft:gpt-4o-mini-2024-07-18:org:suffix:id`` (the base model's encoding).

    Args:
        model: an OpenAI model id (``gpt-4o-mini``, ``gpt-4.1-mini-2025-04-14``, ``o3-mini``, ...).

    Returns:
        ``o200k_base`` for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, gpt-oss and the o-series; ``cl100k_base``
        for gpt-4 and gpt-3.5; ``o200k_base`` with ``known=False`` for anything else.
    """
    name = _base_model(model).lower()
    if _O200K.match(name):
        return EncodingChoice("o200k_base", known=True)
    if _CL100K.match(name):
        return EncodingChoice("cl100k_base", known=True)
    return EncodingChoice("o200k_base", known=False)


def encoding_for_model(model: str) -> EncodingName:
    """
    The encoding name for a model (``o200k_base`` when the model is not recognised; see
    ``lookup_encoding`` for the flag).
    """
    return lookup_encoding(model).encoding


def count_text(text: str, encoding: str) -> int:
    """
    The exact number of tokens ``text`` has in ``encoding``.

    Args:
        text: any text; special-token text (``<|endoftext|>``) counts as plain text.
        encoding: ``"o200k_base"`` or ``"cl100k_base"``.

    Raises:
        ValueError: for another encoding, or a text too long for the counter (200,000 tokens or
            1,000,000 characters, more than any model's context).
    """
    if not text:
        return 0
    if _remembered:
        memo = _remembered[-1]
        key = (text, encoding)
        found = memo.get(key)
        if found is None:
            found = memo[key] = _count(text, _checked(encoding))
        return found
    return _count(text, _checked(encoding))


@contextlib.contextmanager
def counts_remembered() -> Iterator[None]:
    """
    Within the block, ``count_text`` (and so every count here) tokenises each distinct text once:
    the counts are kept until the block ends, whatever their number (the small cache of ``_count``
    forgets them in a run's worth of examples). A cost estimate counts a training example's answer
    for the expected output and again in the example, and each test user's prompt once per model.
    """
    _remembered.append({})
    try:
        yield
    finally:
        _remembered.pop()


def count_chat(messages: Iterable[ChatMessage | Mapping[str, object]], model: str) -> int:
    """
    The tokens of a chat prompt by the cookbook rule: per message 3, plus the tokens of each value
    (role, content, name), plus 1 for a name; plus 3 for the reply priming.

    Args:
        messages: ``ChatMessage`` values, or mappings as in a fine-tune JSONL line (string values
            are counted; others, such as a ``weight``, are not).
        model: the model the prompt is for (it picks the encoding).
    """
    encoding = encoding_for_model(model)
    total = TOKENS_REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if isinstance(message, ChatMessage):
            total += _count(message.role, encoding) + count_text(message.content, encoding)
            continue
        for key, value in message.items():
            if isinstance(value, str):
                total += count_text(value, encoding)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def count_example(example: FineTuneExample, model: str = "gpt-4o-mini") -> int:
    """
    The tokens of one fine-tune example (the cookbook's estimate of what one epoch bills for it).
    """
    return count_chat(example.messages, model)


def count_assistant(example: FineTuneExample, model: str = "gpt-4o-mini") -> int:
    """
    The tokens of an example's assistant messages (content only): the answer the model learns.
    """
    encoding = encoding_for_model(model)
    return sum(count_text(m.content, encoding) for m in example.messages if m.role == "assistant")


def count_training(
    examples: Sequence[FineTuneExample], model: str = "gpt-4o-mini", *, max_per_example: int | None = None
) -> int:
    """
    The tokens one epoch over ``examples`` bills, each example capped at ``max_per_example`` (the
    training context: longer examples are truncated) when given.
    """
    counts = (count_example(e, model) for e in examples)
    if max_per_example is None:
        return sum(counts)
    return sum(min(c, max_per_example) for c in counts)


# -- internals ------------------------------------------------------------------------------------------


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


def _base_model(model: str) -> str:
    # "ft:gpt-4o-mini-2024-07-18:org:suffix:id[:ckpt-step-N]" -> "gpt-4o-mini-2024-07-18"
    if model.startswith("ft:"):
        return model[3:].split(":", 1)[0]
    return model


def _checked(encoding: str) -> str:
    if encoding not in _ENCODINGS:
        msg = f"unknown encoding {encoding!r}: expected one of {', '.join(map(repr, _ENCODINGS))}"
        raise ValueError(msg)
    return encoding


@functools.cache
def _encoder(encoding: str) -> _Encoder:
    # Importing bpe-openai loads both embedded encodings (under a second). Version 0.1.4 reads them
    # with importlib.resources.open_binary, deprecated since Python 3.11; the warning concerns its
    # code, not ours, and would fail every run under -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        return cast(_Encoder, bpe_openai.get_encoding(encoding))


_remembered: list[dict[tuple[str, str], int]] = []
"""The counts of the innermost ``counts_remembered`` block, by (text, encoding)."""


# Prompts repeat: every example of a run shares its system text and many share titles, so a small
# cache of counts pays for itself.
@functools.lru_cache(maxsize=8192)
def _count(text: str, encoding: str) -> int:
    try:
        return len(_encoder(encoding).encode_ordinary(text))
    except ValueError as exc:
        msg = f"cannot count a text of {len(text):,} characters in {encoding}: {exc}"
        raise ValueError(msg) from exc
