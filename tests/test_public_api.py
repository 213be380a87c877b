"""
The public API: everything in llmrec.__all__ exists, and nothing public is missing from it.
"""

from __future__ import annotations

import llmrec


def test_all_names_exist():
    """Every name in __all__ is importable from llmrec."""
    missing = [name for name in llmrec.__all__ if not hasattr(llmrec, name)]

    assert missing == []


def test_all_is_sorted_and_unique():
    """__all__ lists each name once."""
    assert len(set(llmrec.__all__)) == len(llmrec.__all__)


def test_key_entry_points_are_public():
    """The names the README's API example uses are exported."""
    expected = {
        "parse_spec",
        "generate_synthetic",
        "FakeProvider",
        "run_experiment",
        "render_report",
        "Provider",
    }

    assert expected <= set(llmrec.__all__)
