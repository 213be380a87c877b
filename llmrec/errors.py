"""
Errors raised by llmrec.

The tree:

- ``LlmrecError``: base of everything llmrec raises on purpose.
  - ``SpecError``: the experiment spec is invalid; keeps every problem found (``problems``).
  - ``DataError``: a data file is missing or malformed; names the file and, where known, the line.
  - ``ParseError``: model output could not be read back into a list of movies.
  - ``ProviderError``: a provider (fake, OpenAI, local) failed or answered something unusable.
    - ``MissingExtraError``: a provider needs an optional extra that is not installed.
  - ``StoreError``: the run store holds something it cannot read (a damaged log, an unknown schema).
  - ``RunLockedError``: another process holds the run directory.

Only ``cli.py`` prints these and turns them into exit codes: 2 for ``SpecError`` and ``DataError``
(bad input), 1 for ``ProviderError`` and other runtime failures.
"""

from __future__ import annotations

import re
import unicodedata

import attrs

__all__ = [
    "DataError",
    "LlmrecError",
    "MissingExtraError",
    "ParseError",
    "ProviderError",
    "RunLockedError",
    "SpecError",
    "SpecProblem",
    "StoreError",
]


class LlmrecError(Exception):
    """
    Base class of every error llmrec raises on purpose.
    """


@attrs.frozen
class SpecProblem:
    """
    One problem found in a spec.

    ``path`` is the dotted field path (``sampling.users``, ``variant[1].watch_factor``; empty for the
    top level), ``value`` the value as written (only meaningful when ``has_value``; an unknown key, for
    one, has none) and ``expected`` what was expected.
    """

    path: str
    expected: str
    value: object = attrs.field(default=None)
    has_value: bool = attrs.field(default=False)

    @property
    def message(self) -> str:
        """
        The problem as one line: ``path = value: expected ...`` or ``path: message``.
        """
        where = self.path or "top level"
        if self.has_value:
            return f"{where} = {format_toml_value(self.value)}: expected {self.expected}"
        return f"{where}: {self.expected}"


def format_toml_value(value: object) -> str:
    """
    Write a value the way it would appear in TOML, so users recognise what they typed.

    Strings are written with TOML's escapes, and every control character, line separator or
    surrogate as ``\\uXXXX``, so a problem message is always one printable line.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(str(k))} = {format_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return str(value)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(text: str) -> str:
    """
    ``text`` as a TOML basic string: quoted, escaped, with no control character left raw.
    """
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    """
    ``key`` as written in TOML: bare when it can be, else a quoted string.
    """
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


class SpecError(LlmrecError):
    """
    The spec is invalid. ``problems`` holds every problem found, ``source`` names the spec.
    """

    def __init__(self, source: str, problems: tuple[SpecProblem, ...]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        head = f"{source} has {n} problem{'s' if n != 1 else ''}"
        super().__init__("\n".join([head, *("  " + p.message for p in problems)]))


class DataError(LlmrecError):
    """
    A data file is missing or malformed. ``path`` and ``line`` (1-based, or None) say where.
    """

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class ParseError(LlmrecError):
    """
    Model output could not be read as a list of recommendations.
    """


class ProviderError(LlmrecError):
    """
    A provider failed. ``status`` and ``request_id`` are set when the provider reported them.
    """

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        self.status = status
        self.request_id = request_id
        extra = []
        if status is not None:
            extra.append(f"status {status}")
        if request_id is not None:
            extra.append(f"request id {request_id}")
        super().__init__(message + (f" ({', '.join(extra)})" if extra else ""))


class MissingExtraError(ProviderError):
    """
    A provider needs an optional extra that is not installed; the message says how to install it.
    """


class StoreError(LlmrecError):
    """
    The run store holds something it cannot read (a damaged log record, an unknown schema version).
    """


class RunLockedError(LlmrecError):
    """
    Another process holds the run directory's lock.
    """
