"""
The per-user explorer's data: one ``<script>`` file per variant beside the page (browsers block
fetch/XHR under ``file://``, but load scripts), each calling ``window.llmrecExplorer.push(...)``.

Titles are interned in one table (``explorer/titles.js``) and referenced by index; a raw answer is
stored only when it differs from the numbered list of its items' texts, which the page rebuilds
otherwise. That keeps the folder under 2 MB (plus plotly.js) at 1,000 test users. A variant with more
than ``EXPLORER_USERS`` test users (``sampling.users = "all"`` has ~47,500) shows that many, evenly
spaced over its sorted user ids, and the page says so (``explorer_note``); the tables score them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llmrec.results import Prediction

__all__ = ["EXPLORER_USERS", "explorer_files", "explorer_names", "explorer_note", "script_json"]

EXPLORER_USERS = 2_000
"""The most test users per variant the explorer embeds (about 2 MB of data per variant)."""

_ROLE_ORDER = {"baseline": 0, "finetuned": 1, "few_shot": 2, "classic": 3, "ideal": 4}


def script_json(data: Any) -> str:
    """
    JSON safe to place inside a ``<script>`` element (no ``<``, ``>`` or ``&`` spelled as such).
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _rebuilt(prediction: Prediction) -> str:
    return "\n".join(f"{item.rank}. {item.text}" for item in prediction.items)


def _first_seed(predictions: Sequence[Prediction]) -> dict[str, list[Prediction]]:
    seed = predictions[0].seed if predictions else 0
    by_variant: dict[str, list[Prediction]] = {}
    for p in predictions:
        if p.seed == seed:
            by_variant.setdefault(p.variant, []).append(p)
    return by_variant


def _shown(users: set[int]) -> set[int]:
    """
    The users the explorer embeds: all, or ``EXPLORER_USERS`` evenly spaced over the sorted ids.
    """
    if len(users) <= EXPLORER_USERS:
        return users
    ordered = sorted(users)
    step = len(ordered) / EXPLORER_USERS
    return {ordered[int(i * step)] for i in range(EXPLORER_USERS)}


def explorer_names(predictions: Sequence[Prediction]) -> tuple[str, ...]:
    """
    The names of the files ``explorer_files`` writes, sorted, without building them.
    """
    if not predictions:
        return ()
    count = len(_first_seed(predictions))
    return tuple(sorted([*(f"explorer/{n}.js" for n in range(1, count + 1)), "explorer/titles.js"]))


def explorer_note(predictions: Sequence[Prediction]) -> str | None:
    """
    What the page says when a variant has more test users than the explorer embeds, else None.
    """
    capped = []
    for variant, preds in _first_seed(predictions).items():
        users = len({p.user for p in preds})
        if users > EXPLORER_USERS:
            capped.append(f"{EXPLORER_USERS:,} of {variant}'s {users:,}")
    if not capped:
        return None
    return (
        f"The explorer shows {'; '.join(capped)} test users, evenly spaced over the sorted user ids "
        "(the tables and charts score every test user)."
    )


def explorer_files(predictions: Sequence[Prediction]) -> dict[str, str]:
    """
    The explorer's data files by name (``explorer/<n>.js``, one per variant in first-seen order).

    Only the first seed's predictions are shown (the tables are those of the first seed too).
    Each file pushes ``{"variant", "models": [[label, role]...], "users": [...]}``, and
    ``explorer/titles.js`` sets ``window.llmrecTitles`` to the title table the indexes point into;
    a user is ``[id, profile title indexes, ground-truth title indexes, lists]`` and a list is
    ``[model index, items, raw answer or null or 0, parse failure or null]`` with items
    ``[title index, hit 0/1, match kind]``; raw 0 means "the numbered item texts", null "none".
    At most ``EXPLORER_USERS`` users per variant (see ``explorer_note``).
    """
    if not predictions:
        return {}
    by_variant = _first_seed(predictions)
    files: dict[str, str] = {}
    titles: dict[str, int] = {}

    def ref(title: str) -> int:
        return titles.setdefault(title, len(titles))

    for number, (variant, preds) in enumerate(by_variant.items(), start=1):
        models: dict[str, int] = {}
        roles: dict[str, str] = {}
        for p in sorted(preds, key=lambda p: _ROLE_ORDER.get(p.role, 9)):
            if p.model not in models and p.role != "ideal":
                models[p.model] = len(models)
                roles[p.model] = p.role
        users: dict[int, list[Any]] = {}
        shown = _shown({p.user for p in preds})
        for p in preds:
            if p.model not in models or p.user not in shown:
                continue
            entry = users.get(p.user)
            if entry is None:
                entry = [
                    p.user,
                    [ref(t) for t in p.profile_titles],
                    [ref(t) for t in p.ground_truth_titles],
                    [],
                ]
                users[p.user] = entry
            items = [
                [ref(item.text if item.text is not None else (item.title or "")), int(item.hit), item.match]
                for item in p.items
            ]
            raw: str | int | None
            if p.raw_text is None:
                raw = None
            elif p.items and p.raw_text == _rebuilt(p):
                raw = 0
            else:
                raw = p.raw_text
            entry[3].append([models[p.model], items, raw, p.parse_failure])
        for entry in users.values():
            entry[3].sort(key=lambda x: x[0])
        data = {
            "variant": variant,
            "models": [[_label(m, roles[m]), roles[m]] for m in models],
            "users": [users[u] for u in sorted(users)],
        }
        files[f"explorer/{number}.js"] = f"window.llmrecExplorer.push({script_json(data)});\n"
    files["explorer/titles.js"] = f"window.llmrecTitles = {script_json(list(titles))};\n"
    return files


def _label(model: str, role: str) -> str:
    if role == "baseline":
        return f"Baseline (zero-shot) · {model}"
    if role == "finetuned":
        return f"Fine-tuned · {model}"
    return model
