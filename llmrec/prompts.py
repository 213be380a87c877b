"""
Prompts and fine-tune examples (the paper's T + F system text and content C), as pure functions.

The user content lists the profile as numbered "Title (Year)" lines, without ratings. A training
example's assistant answer lists the ground-truth titles in share order as numbered "Title (Year)"
lines, the format the default system text asks for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from llmrec.providers.base import ChatMessage, FineTuneExample
from llmrec.spec import PromptSpec

__all__ = [
    "answer_text",
    "build_example",
    "build_few_shot_messages",
    "build_messages",
    "numbered_list",
    "system_text",
    "user_text",
]


def _fill(template: str, spec: PromptSpec, profile: str = "") -> str:
    # Plain replacement, not str.format: prompt texts may contain other braces (JSON examples).
    return template.replace("{n}", str(spec.n_recommendations)).replace("{profile}", profile)


def numbered_list(titles: Sequence[str]) -> str:
    """
    Titles as "1. Title" lines.
    """
    return "\n".join(f"{i}. {title}" for i, title in enumerate(titles, start=1))


def system_text(spec: PromptSpec) -> str:
    """
    The system message: task T, a blank line, output format F.
    """
    return _fill(spec.task, spec) + "\n\n" + _fill(spec.format_text, spec)


def user_text(profile_titles: Sequence[str], spec: PromptSpec) -> str:
    """
    The user message (content C) for a profile given as display titles.
    """
    return _fill(spec.user_template, spec, numbered_list(profile_titles))


def build_messages(profile_titles: Sequence[str], spec: PromptSpec) -> tuple[ChatMessage, ...]:
    """
    The system and user messages asking for recommendations for one profile.
    """
    return (
        ChatMessage(role="system", content=system_text(spec)),
        ChatMessage(role="user", content=user_text(profile_titles, spec)),
    )


def answer_text(titles: Sequence[str], spec: PromptSpec) -> str:
    """
    Titles written as the spec's output mode asks: numbered lines, or ``{"movies": [...]}``.
    """
    if spec.output_mode == "json":
        return json.dumps({"movies": list(titles)}, ensure_ascii=False)
    return numbered_list(titles)


def build_example(
    profile_titles: Sequence[str], answer_titles: Sequence[str], spec: PromptSpec
) -> FineTuneExample:
    """
    One fine-tune conversation: the prompt plus the ground truth as the assistant's answer.
    """
    answer = ChatMessage(role="assistant", content=answer_text(answer_titles, spec))
    return FineTuneExample(messages=(*build_messages(profile_titles, spec), answer))


def build_few_shot_messages(
    profile_titles: Sequence[str],
    examples: Sequence[tuple[Sequence[str], Sequence[str]]],
    spec: PromptSpec,
) -> tuple[ChatMessage, ...]:
    """
    The system message, then each example as a (user, assistant) turn, then the user's own prompt.
    """
    turns: list[ChatMessage] = [ChatMessage(role="system", content=system_text(spec))]
    for profile, answer in examples:
        turns.append(ChatMessage(role="user", content=user_text(profile, spec)))
        turns.append(ChatMessage(role="assistant", content=answer_text(answer, spec)))
    turns.append(ChatMessage(role="user", content=user_text(profile_titles, spec)))
    return tuple(turns)
