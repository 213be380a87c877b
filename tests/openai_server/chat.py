"""
Deterministic chat completions: a list of titles computed from the request.

The answer to a request is a pure function of the model id, the messages, ``n`` and ``seed``:

- how many titles: the first "<k> movies|films|titles|recommendations" in the messages, else 10;
- which titles: drawn with ``Random(sha256(model, messages, seed, choice index))`` from the titles the
  prompt lists as numbered or bulleted lines (a catalogue, few-shot answers), then the titles a
  fine-tuned model learned from its training answers, then a built-in list; titles listed in the last
  user message (the profile) are not recommended while others remain;
- the form: numbered "1. Title" lines, or ``{"movies": [...]}`` for ``json_object`` and ``json_schema``
  (a json_schema whose top level has one array property gets that property's name instead, and
  ``{"title", "year"}`` objects when its items are objects with a ``title``).

Reasoning models spend reasoning tokens (by ``reasoning_effort``) before answering; both count against
``max_completion_tokens`` and a reply cut short ends with ``finish_reason: "length"``; a ``stop`` sequence
ends the reply before it. ``logprobs: true`` (in the server's ``logprobs`` mode) gives one entry per
estimated token (with ``top_logprobs`` alternatives), log-probabilities drawn from the answer's hash.
Prompt caching: a prompt of 1,024 tokens or more reports as cached the longest prefix (in steps of 128
tokens) that an earlier request already sent.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from .formats import estimate_tokens, message_text, messages_tokens, titles_in, token_pieces

__all__ = ["BUILTIN_TITLES", "PrefixCache", "complete_chat", "is_reasoning_model"]

BUILTIN_TITLES = (
    "The Shawshank Redemption (1994)",
    "Pulp Fiction (1994)",
    "Forrest Gump (1994)",
    "The Matrix (1999)",
    "Fight Club (1999)",
    "The Sixth Sense (1999)",
    "American Beauty (1999)",
    "Gladiator (2000)",
    "Memento (2000)",
    "Amelie (2001)",
    "Spirited Away (2001)",
    "Shrek (2001)",
    "The Lord of the Rings: The Fellowship of the Ring (2001)",
    "Ocean's Eleven (2001)",
    "Monsters, Inc. (2001)",
    "A Beautiful Mind (2001)",
    "Minority Report (2002)",
    "Catch Me If You Can (2002)",
    "The Pianist (2002)",
    "Chicago (2002)",
    "Finding Nemo (2003)",
    "Lost in Translation (2003)",
    "Pirates of the Caribbean: The Curse of the Black Pearl (2003)",
    "Kill Bill: Vol. 1 (2003)",
    "Big Fish (2003)",
    "Mystic River (2003)",
    "Eternal Sunshine of the Spotless Mind (2004)",
    "The Incredibles (2004)",
    "Million Dollar Baby (2004)",
    "Ray (2004)",
    "Hotel Rwanda (2004)",
    "Sideways (2004)",
    "Batman Begins (2005)",
    "Crash (2005)",
    "Walk the Line (2005)",
    "Good Night, and Good Luck. (2005)",
    "The Godfather (1972)",
    "Star Wars: Episode IV - A New Hope (1977)",
    "Raiders of the Lost Ark (1981)",
    "Back to the Future (1985)",
    "The Silence of the Lambs (1991)",
    "Groundhog Day (1993)",
)
_COUNT = re.compile(r"\b(\d{1,3})\s+(?:movies|films|titles|recommendations)\b", re.IGNORECASE)
_EFFORT_TOKENS = {"none": 0, "minimal": 0, "low": 64, "medium": 192, "high": 512, "xhigh": 1024}


def is_reasoning_model(model: str) -> bool:
    """
    Whether a model id names a reasoning model (o-series or gpt-5), also as a fine-tune base.
    """
    base = model.split(":")[1] if model.startswith("ft:") else model
    return base.startswith("o") or base.startswith("gpt-5")


class PrefixCache:
    """
    The prompt prefixes seen so far, for ``prompt_tokens_details.cached_tokens``.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def cached_tokens(self, model: str, pieces: Sequence[str]) -> int:
        """
        Tokens of the longest already-seen prefix (0 under 1,024), recording this prompt's prefixes.
        """
        if len(pieces) < 1024:
            return 0
        h = hashlib.sha256(model.encode())
        boundaries: list[tuple[int, str]] = []
        done = 0
        for end in range(1024, len(pieces) + 1, 128):
            h.update("\x00".join(pieces[done:end]).encode())
            done = end
            boundaries.append((end, h.copy().hexdigest()))
        cached = 0
        with self._lock:
            for end, digest in boundaries:
                if digest in self._seen:
                    cached = end
                self._seen.add(digest)
        return cached


def _wanted(messages: Sequence[dict[str, Any]]) -> int:
    for m in messages:
        found = _COUNT.search(message_text(m))
        if found:
            return max(1, min(50, int(found.group(1))))
    return 10


def _candidates(messages: Sequence[dict[str, Any]], learned: Sequence[str]) -> tuple[list[str], set[str]]:
    # titles the prompt lists outside the last user message, then learned ones; the profile apart
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    profile = set(titles_in(message_text(messages[last_user]))) if last_user >= 0 else set()
    listed: list[str] = []
    for i, m in enumerate(messages):
        if i != last_user:
            listed.extend(titles_in(message_text(m)))
    listed.extend(learned)
    return list(dict.fromkeys(t for t in listed if t)), profile


def _draw(preferred: list[str], profile: set[str], k: int, rng: random.Random) -> list[str]:
    fresh = [t for t in preferred if t not in profile]
    chosen = rng.sample(fresh, min(k, len(fresh)))
    if len(chosen) < k:
        rest = [t for t in BUILTIN_TITLES if t not in profile and t not in chosen]
        chosen.extend(rng.sample(rest, min(k - len(chosen), len(rest))))
    if len(chosen) < k:  # the profile lists nearly every title: recommend some of it after all
        rest = [t for t in dict.fromkeys([*preferred, *BUILTIN_TITLES]) if t not in chosen]
        chosen.extend(rng.sample(rest, min(k - len(chosen), len(rest))))
    return chosen


def _list_field(response_format: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    # the array property a json_schema asks for (when it has exactly one) and its items schema
    schema = ((response_format or {}).get("json_schema") or {}).get("schema") or {}
    arrays = [
        (k, v.get("items") or {})
        for k, v in (schema.get("properties") or {}).items()
        if isinstance(v, dict) and v.get("type") == "array"
    ]
    return arrays[0] if len(arrays) == 1 else ("movies", {})


def _as_item(title: str, items: dict[str, Any]) -> Any:
    # "Heat (1995)" as a string, or as {"title": "Heat", "year": 1995} when the items are such objects
    props = items.get("properties") if isinstance(items, dict) else None
    if not isinstance(props, dict) or "title" not in props:
        return title
    found = re.fullmatch(r"(.*\S)\s+\((\d{4})\)", title)
    name, year = (found.group(1), int(found.group(2))) if found else (title, None)
    item: dict[str, Any] = {"title": name}
    if "year" in props:
        item["year"] = year
    return item


def _render(titles: list[str], response_format: dict[str, Any] | None) -> str:
    kind = (response_format or {}).get("type", "text")
    if kind in ("json_object", "json_schema"):
        key, items = _list_field(response_format)
        return json.dumps({key: [_as_item(t, items) for t in titles]}, ensure_ascii=False)
    return "\n".join(f"{i}. {t}" for i, t in enumerate(titles, start=1))


def _logprobs(content: str, digest: bytes, top: int) -> dict[str, Any]:
    # one entry per estimated token; log-probabilities drawn from the answer's hash, the chosen one highest
    rng = random.Random(digest)
    entries = []
    for piece in token_pieces(content):
        chosen = -rng.random() * 0.5
        alternatives = sorted(
            (chosen - rng.random() * 4 - 0.01 for _ in range(max(0, top - 1))), reverse=True
        )
        entry = {"token": piece, "logprob": chosen, "bytes": list(piece.encode()), "top_logprobs": []}
        if top:
            entry["top_logprobs"] = [{"token": piece, "logprob": chosen, "bytes": list(piece.encode())}] + [
                {"token": f"{piece}~{k}", "logprob": lp, "bytes": list(f"{piece}~{k}".encode())}
                for k, lp in enumerate(alternatives, start=1)
            ]
        entries.append(entry)
    return {"content": entries, "refusal": None}


def _truncate(text: str, budget: int) -> str:
    if budget <= 0:
        return ""
    for count, match in enumerate(re.finditer(r"\w+|[^\w\s]", text), start=1):
        if count == budget:
            return text[: match.end()]
    return text


def complete_chat(
    body: dict[str, Any],
    *,
    model: str,
    learned: Sequence[str],
    cache: PrefixCache,
) -> dict[str, Any]:
    """
    The chat completion object for a validated request.

    Args:
        body: the request body.
        model: the model id to report (aliases resolved to a snapshot).
        learned: titles a fine-tuned model saw in its training answers.
        cache: the server's prompt-prefix cache.
    """
    messages: list[dict[str, Any]] = [m for m in body.get("messages", []) if isinstance(m, dict)]
    reasoning = is_reasoning_model(model)
    response_format = body.get("response_format")
    prompt_tokens = messages_tokens(messages)
    pieces: list[str] = []
    for m in messages:
        pieces.extend(token_pieces(message_text(m)))
    cached = cache.cached_tokens(model, pieces)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    key = json.dumps([model, messages, body.get("seed")], sort_keys=True, ensure_ascii=False)
    preferred, profile = _candidates(messages, learned)
    k = _wanted(messages)
    stop_value = body.get("stop")
    stops = (
        [stop_value] if isinstance(stop_value, str) else [s for s in stop_value or [] if isinstance(s, str)]
    )
    choices = []
    completion_tokens = 0
    reasoning_tokens = 0
    for index in range(int(body.get("n") or 1)):
        digest = hashlib.sha256(f"{key}\x00{index}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        content = _render(_draw(preferred, profile, k, rng), response_format)
        for stop in stops:  # the reply ends before the first stop sequence, which is not included
            if stop and stop in content:
                content = content[: content.index(stop)]
        spent = 0
        if reasoning:
            spent = _EFFORT_TOKENS.get(str(body.get("reasoning_effort") or "medium"), 192)
            spent += digest[8] % 64 if spent else 0
        finish = "stop"
        if limit is not None and spent + estimate_tokens(content) > int(limit):
            spent = min(spent, int(limit))
            content = _truncate(content, int(limit) - spent)
            finish = "length"
        completion_tokens += spent + estimate_tokens(content)
        reasoning_tokens += spent
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "annotations": [],
        }
        logprobs = (
            _logprobs(content, digest, int(body.get("top_logprobs") or 0)) if body.get("logprobs") else None
        )
        choices.append({"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish})
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10],
    }
