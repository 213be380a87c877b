"""
Stage keys: what a stage read, hashed, so a rerun finds what it already computed.

A key is derived from parsed values (``section_hash(spec.prompt)``), never from the spec's text:
reformatting or reordering a spec changes no key. ``stage_key(name, reads, inputs, version=...)``
hashes the stage's name, the hashes of the values it reads, the keys of the stages it takes as input,
and, for cheap stages, llmrec's version (an upgrade recomputes them). Paid stages (fine-tune,
inference) pass ``version=None`` and read content only, so upgrading llmrec never pays twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

__all__ = ["canonical_json", "content_hash", "llmrec_version", "section_hash", "stage_key"]

_CONVERTER = cattrs.Converter()


def _plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return _plain(_CONVERTER.unstructure(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def llmrec_version() -> str:
    """
    The installed llmrec's version (part of every cheap stage's key), or "0+unknown" in a source
    tree without an install.
    """
    from importlib import metadata

    try:
        return metadata.version("llmrec")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def canonical_json(value: Any) -> str:
    """
    One spelling of a value as JSON: attrs objects unstructured, keys sorted, no whitespace.
    """
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(data: bytes | str) -> str:
    """
    The sha256 of some content, hex.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def section_hash(value: Any) -> str:
    """
    The hash of a parsed value (a spec section, a tuple of fields, a number).
    """
    return content_hash(canonical_json(value))


def stage_key(name: str, reads: Mapping[str, Any], inputs: Mapping[str, str], *, version: str | None) -> str:
    """
    The key of one stage run: a short hex digest.

    Args:
        name: the stage (and its instance, e.g. "ground_truth/profileData50@seed7").
        reads: the parsed values it reads, by name; hashed here.
        inputs: the keys of the stages whose outputs it takes.
        version: llmrec's version for cheap stages; None for paid ones.
    """
    payload = {
        "stage": name,
        "reads": {k: section_hash(v) for k, v in sorted(reads.items())},
        "inputs": dict(sorted(inputs.items())),
        "version": version,
    }
    return content_hash(canonical_json(payload))[:20]
