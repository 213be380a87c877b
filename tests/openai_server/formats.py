"""
Uploaded JSONL line formats (fine-tuning chat examples, Batch API requests), token estimates, titles.

The OpenAPI description has no schema for either line format, so they are checked here against the
documented formats:

- fine-tuning (chat): ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``;
  every content a non-empty string; at least one assistant message; an assistant message may carry
  ``"weight": 0|1``; at least ``min_examples`` lines (OpenAI requires 10).
- batch: ``{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}``;
  ``custom_id`` a unique string; at most 50,000 lines and 200 MB; one model for the whole file.

Tokens are estimated, not counted with a real tokenizer: every word (``\\w+``) and every other
non-space character is one token, plus 3 per message and 3 for the reply's priming.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BATCH_MAX_BYTES",
    "BATCH_MAX_LINES",
    "LineProblem",
    "check_batch_lines",
    "check_training_lines",
    "estimate_tokens",
    "message_text",
    "messages_tokens",
    "titles_in",
    "token_pieces",
]

BATCH_MAX_LINES = 50_000
BATCH_MAX_BYTES = 200 * 1024 * 1024
_ROLES = ("system", "user", "assistant")
_PIECE = re.compile(r"\w+|[^\w\s]")
_LISTED = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*\u2022])\s+(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class LineProblem:
    """
    One bad line of an uploaded file (1-based line number).
    """

    line: int
    code: str
    message: str
    param: str | None = None


def token_pieces(text: str) -> list[str]:
    """
    The pieces the token estimate counts: words and single punctuation characters.
    """
    return _PIECE.findall(text)


def estimate_tokens(text: str) -> int:
    """
    Estimated token count of a text.
    """
    return len(_PIECE.findall(text))


def message_text(message: dict[str, Any]) -> str:
    """
    The text of a chat message whose content is a string or a list of text parts.
    """
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def messages_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """
    Estimated prompt tokens of a conversation (3 per message, 3 for priming the reply).
    """
    return 3 + sum(3 + estimate_tokens(message_text(m)) for m in messages if isinstance(m, dict))


def titles_in(text: str) -> list[str]:
    """
    Titles listed in a text as numbered or bulleted lines ("1. Heat (1995)", "- Heat (1995)").

    A JSON answer ``{"movies": [...]}`` counts too.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            decoded = json.loads(stripped)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            for value in decoded.values():
                if isinstance(value, list):
                    return [str(v.get("title", "")) if isinstance(v, dict) else str(v) for v in value if v]
    return [m.group(1) for m in _LISTED.finditer(text)]


def _decode(line: str, number: int) -> tuple[Any, LineProblem | None]:
    try:
        return json.loads(line), None
    except json.JSONDecodeError as err:
        return None, LineProblem(number, "invalid_json", f"Line {number}: not valid JSON ({err.msg}).")


def _check_example(value: Any, n: int) -> LineProblem | None:
    if not isinstance(value, dict):
        return LineProblem(n, "invalid_example", f"Line {n}: expected a JSON object with 'messages'.")
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        return LineProblem(
            n, "missing_messages", f"Line {n}: 'messages' must be a non-empty list.", "messages"
        )
    assistants = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            return LineProblem(n, "invalid_message", f"Line {n}: {where} must be an object.", where)
        role = message.get("role")
        if role not in _ROLES:
            return LineProblem(
                n,
                "invalid_role",
                f"Line {n}: {where}.role is {json.dumps(role)}; expected one of {', '.join(_ROLES)}.",
                f"{where}.role",
            )
        content = message.get("content")
        if not isinstance(content, str) or not content:
            return LineProblem(
                n,
                "invalid_content",
                f"Line {n}: {where}.content must be a non-empty string.",
                f"{where}.content",
            )
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            return LineProblem(
                n, "invalid_weight", f"Line {n}: {where}.weight must be 0 or 1, on assistant messages only."
            )
        assistants += role == "assistant"
    if assistants == 0:
        return LineProblem(n, "missing_assistant_message", f"Line {n}: no assistant message to learn from.")
    return None


def check_training_lines(lines: Iterable[str], *, min_examples: int) -> tuple[list[Any], LineProblem | None]:
    """
    Decode and check a fine-tuning chat file.

    Returns:
        The examples, and the first problem (None when the file is fine).
    """
    examples: list[Any] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        value, problem = _decode(line, n)
        problem = problem or _check_example(value, n)
        if problem is not None:
            return examples, problem
        examples.append(value)
    if len(examples) < min_examples:
        return examples, LineProblem(
            0,
            "too_few_examples",
            f"Training file has {len(examples)} example(s), but must have at least {min_examples} examples.",
        )
    return examples, None


def check_batch_lines(lines: Iterable[str], endpoint: str) -> tuple[list[Any], list[LineProblem]]:
    """
    Decode and check a Batch API input file for one endpoint.

    Returns:
        The request lines, and every problem found (empty when the file is fine).
    """
    requests: list[Any] = []
    problems: list[LineProblem] = []
    seen: set[str] = set()
    models: set[str] = set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(requests) + len(problems) >= BATCH_MAX_LINES:
            problems.append(
                LineProblem(n, "too_many_requests", f"The file has more than {BATCH_MAX_LINES} requests.")
            )
            break
        value, problem = _decode(line, n)
        if problem is None:
            problem = _check_request(value, n, endpoint, seen)
        if problem is not None:
            problems.append(problem)
            continue
        model = value["body"].get("model")
        if isinstance(model, str):
            models.add(model)
        requests.append(value)
    if len(models) > 1:
        problems.append(
            LineProblem(
                0,
                "mixed_models",
                f"A batch input file must use one model; this one uses {', '.join(sorted(models))}.",
                "body.model",
            )
        )
    if not requests and not problems:
        problems.append(LineProblem(0, "empty_file", "The batch input file has no requests."))
    return requests, problems


def _check_request(value: Any, n: int, endpoint: str, seen: set[str]) -> LineProblem | None:
    if not isinstance(value, dict):
        return LineProblem(n, "invalid_request", f"Line {n}: expected a JSON object.")
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return LineProblem(
            n, "missing_custom_id", f"Line {n}: 'custom_id' must be a non-empty string.", "custom_id"
        )
    if custom_id in seen:
        return LineProblem(
            n,
            "duplicate_custom_id",
            f"Line {n}: custom_id {json.dumps(custom_id)} is used twice.",
            "custom_id",
        )
    seen.add(custom_id)
    if value.get("method") != "POST":
        return LineProblem(n, "invalid_method", f"Line {n}: 'method' must be \"POST\".", "method")
    if value.get("url") != endpoint:
        return LineProblem(
            n,
            "invalid_url",
            f"Line {n}: 'url' is {json.dumps(value.get('url'))}, but the batch endpoint is {endpoint}.",
            "url",
        )
    if not isinstance(value.get("body"), dict):
        return LineProblem(n, "missing_body", f"Line {n}: 'body' must be a JSON object.", "body")
    return None
