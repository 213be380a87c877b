"""
safe_text: any string made storable as UTF-8 (lone surrogates replaced, pairs joined, the rest kept).
"""

from __future__ import annotations

import json

from hypothesis import given

from llmrec.text import REPLACEMENT, safe_text
from tests.strategies import any_texts


def test_lone_surrogates_become_replacement_characters():
    """Each lone surrogate, high or low, becomes one U+FFFD; the text around it is kept."""
    assert safe_text("a\ud800b\udfffc") == f"a{REPLACEMENT}b{REPLACEMENT}c"
    assert safe_text("\udc80\udc80") == REPLACEMENT * 2
    assert safe_text("\ud800\ud800\udc00") == REPLACEMENT + "\U00010000"


def test_unjoined_surrogate_pair_becomes_its_code_point():
    """A high surrogate followed by a low one is the astral character they encode."""
    assert safe_text("\ud83c\udfac Heat") == "🎬 Heat"


def test_valid_text_is_returned_unchanged():
    """Text that encodes as UTF-8 (NUL, controls, RTL marks, emoji) comes back as the same object."""
    text = "Heat\x00\x1b[0m \u202eRonin\u202c 🎬 \u2028"

    assert safe_text(text) is text


def test_surrogateescape_bytes_become_replacement_characters():
    """Bytes that are not UTF-8, decoded with surrogateescape, become U+FFFD, one per byte."""
    text = b"Heat\xff\xfe".decode("utf-8", errors="surrogateescape")

    assert safe_text(text) == "Heat" + REPLACEMENT * 2


@given(any_texts(50))
def test_any_text_encodes_and_survives_a_json_line(text: str):
    """Any string, once safe, encodes as UTF-8, round-trips through a JSON line, and is a fixed point."""
    safe = safe_text(text)
    line = (json.dumps({"raw_text": safe}, ensure_ascii=False) + "\n").encode("utf-8")

    assert json.loads(line.split(b"\n")[0].decode("utf-8")) == {"raw_text": safe}
    assert safe_text(safe) == safe
    assert len(safe) <= len(text)


@given(any_texts(50))
def test_text_without_surrogates_is_unchanged(text: str):
    """Only surrogates are touched: text that has none is returned as it is."""
    clean = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)

    assert safe_text(clean) == clean
