"""
Text that can always be stored: model answers made safe to write as UTF-8 before they reach a log.

A Python ``str`` can hold code points that UTF-8 cannot encode: the surrogates U+D800-U+DFFF. They
reach llmrec from JSON escapes (``"\\ud800"`` decodes to a lone surrogate), from a provider SDK that
decoded bytes with ``errors="surrogateescape"``, or from a local model's broken tokens. Written with
``json.dumps(..., ensure_ascii=False).encode("utf-8")`` they raise ``UnicodeEncodeError`` in the
middle of a log record. ``safe_text`` is applied to every answer before it is parsed or stored.

Policy (``safe_text``):

- a high surrogate followed by a low one (a UTF-16 pair left unjoined) becomes the one code point
  the pair stands for ("\\ud83c\\udfac" -> "🎬");
- every other surrogate (a lone one) becomes U+FFFD REPLACEMENT CHARACTER, one per surrogate;
- everything else is kept as it is, NUL and other control characters included: ``json.dumps`` escapes
  them, so they cannot break a JSON line. (A JSONL reader must split records on ``b"\\n"`` only, not
  with ``str.splitlines``, which also splits at U+2028, U+0085 and other separators that
  ``json.dumps(ensure_ascii=False)`` leaves unescaped.)

Text without surrogates is returned unchanged (the same object), so the check costs one UTF-8 encode.
"""

from __future__ import annotations

__all__ = ["REPLACEMENT", "safe_text"]

REPLACEMENT = "\ufffd"
"""What a lone surrogate becomes."""


def safe_text(text: str) -> str:
    """
    ``text`` with its surrogates joined into pairs or replaced by U+FFFD, so it encodes as UTF-8.

    Args:
        text: any string, possibly holding lone surrogates.

    Returns:
        A string that ``str.encode("utf-8")`` accepts; ``text`` itself when it already was one.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 with surrogatepass writes every code point (paired surrogates included) as UTF-16
        # code units; decoding them back joins valid pairs and replaces each lone unit by U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text
