"""
Prompt texts and fine-tune examples.
"""

from __future__ import annotations

import attrs

from llmrec.prompts import build_example, build_messages, numbered_list, system_text
from llmrec.spec import PromptSpec


def test_messages_hold_task_format_and_numbered_profile():
    """The system text is T then F with {n} filled in; the user text lists the profile without ratings."""
    spec = PromptSpec(n_recommendations=7)
    system, user = build_messages(["Heat (1995)", "Alien (1979)"], spec)

    assert system.role == "system"
    assert system.content == system_text(spec)
    assert "7" in system.content
    assert "{n}" not in system.content
    assert user.role == "user"
    assert "1. Heat (1995)\n2. Alien (1979)" in user.content
    assert "star" not in user.content.lower()


def test_templates_keep_other_braces():
    """Braces other than {n} and {profile} are left as written (no str.format surprises)."""
    spec = attrs.evolve(PromptSpec(), output_format='Reply as {"movies": [...]}, {n} items.')

    assert 'Reply as {"movies": [...]}, 10 items.' in system_text(spec)


def test_example_answer_lists_ground_truth_in_order():
    """A training example ends with the assistant's numbered ground-truth titles, in share order."""
    example = build_example(["Heat (1995)"], ["Ronin (1998)", "Thief (1981)"], PromptSpec())

    assert [m.role for m in example.messages] == ["system", "user", "assistant"]
    assert example.messages[2].content == "1. Ronin (1998)\n2. Thief (1981)"


def test_numbered_list_of_nothing_is_empty():
    """An empty title list renders as an empty string."""
    assert numbered_list([]) == ""
