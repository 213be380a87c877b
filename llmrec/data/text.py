"""
What every data reader does the same way: byte order marks, text encodings, titles, file checks.

- A UTF-8 byte order mark (``EF BB BF``) at the start of any data file is skipped; line numbers do
  not change. In a file expected in ISO-8859-1 it also means the file is UTF-8, and it is read so.
  A UTF-16 or UTF-32 byte order mark is an error (``utf16_or_32``): such files are not text the
  readers can split into lines.
- A catalogue file expected in ISO-8859-1 (Netflix ``movie_titles.csv``, MovieLens ``u.item`` and
  ``movies.dat``) that is valid UTF-8 and holds non-ASCII text is read as UTF-8: a UTF-8 "é"
  (``C3 A9``) read as ISO-8859-1 would become the mojibake "Ã©", and genuine ISO-8859-1 titles are
  never valid UTF-8 (a lone "é" is ``E9``, not followed by a continuation byte). A file that mixes
  the two (some lines UTF-8, others not) is an error naming a line of each.
- A title that still reads like mojibake after decoding ("CafÃ©": UTF-8 read as ISO-8859-1 and saved
  again as UTF-8) is an error saying what it would read as; so is a title holding a control
  character (U+0000-U+001F, U+007F-U+009F; Windows-1252 punctuation such as 0x92 decodes to one).
- A path that must be a file but is a folder, a broken link or not a regular file is an error
  naming it, never skipped.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from llmrec.errors import DataError

__all__ = [
    "UTF8_BOM",
    "bom_length",
    "check_title",
    "decode_catalogue",
    "quote",
    "require_file",
]

UTF8_BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark, skipped at the start of every data file."""

_WIDE_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_QUOTE_LIMIT = 80
_UTF8_PAIR = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")
# a UTF-8 lead byte's character followed by continuation bytes' characters, once decoded as Latin-1
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf]+")
_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f]")


def bom_length(head: bytes, path: str) -> int:
    """
    The length of the UTF-8 byte order mark ``head`` starts with (3), or 0 when there is none.

    Args:
        head: the first bytes of a file (four are enough).
        path: the file, for the message.

    Raises:
        DataError: when the file starts with a UTF-16 or UTF-32 byte order mark.
    """
    if head.startswith(UTF8_BOM):
        return len(UTF8_BOM)
    for mark, name in _WIDE_BOMS:
        if head.startswith(mark):
            msg = f"{name} text (byte order mark {mark.hex(' ').upper()}); save the file as UTF-8"
            raise DataError(msg, path=path, line=1)
    return 0


def decode_catalogue(data: bytes, path: str, encoding: str) -> str:
    """
    Decode a catalogue file expected in ``encoding`` ("iso-8859-1" or "utf-8"), as the module says.

    The byte order mark, if any, is dropped from the text.

    Raises:
        DataError: naming the file and line when the text is not in the expected encoding (or not
            UTF-8 after a UTF-8 byte order mark), mixes ISO-8859-1 and UTF-8 lines, or starts with a
            UTF-16 or UTF-32 byte order mark.
    """
    skip = bom_length(data[:4], path)
    body = data[skip:]
    if skip or encoding == "utf-8":
        why = " after a UTF-8 byte order mark" if skip and encoding != "utf-8" else ""
        return _strict_utf8(body, path, why)
    if body.isascii():
        return body.decode("ascii")
    try:
        return body.decode("utf-8")  # UTF-8 where ISO-8859-1 was expected: read it as what it is
    except UnicodeDecodeError as exc:
        bad_line = body.count(b"\n", 0, exc.start) + 1
        bad_bytes = body[exc.start : exc.end]
    for number, line in enumerate(body.split(b"\n"), start=1):
        if _UTF8_PAIR.search(line) is None:
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        shown = quote(text.removesuffix("\r"))
        msg = (
            f"line {number} is UTF-8 text ({shown}) but this line is not ({bad_bytes!r} is not "
            "UTF-8): the file mixes encodings; save it all as ISO-8859-1 or all as UTF-8"
        )
        raise DataError(msg, path=path, line=bad_line)
    return body.decode("iso-8859-1")


def _strict_utf8(data: bytes, path: str, why: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        msg = f"not UTF-8 text{why}: {data[exc.start : exc.end]!r} cannot be decoded"
        raise DataError(msg, path=path, line=line) from None


def check_title(title: str, movie: int, path: str, line: int) -> None:
    """
    Refuse a title that reads like mojibake or holds a control character.

    Raises:
        DataError: naming the file and line, saying what the title would read as.
    """
    if _MOJIBAKE.search(title) is not None:
        try:
            fixed = _MOJIBAKE.sub(lambda m: m.group().encode("iso-8859-1").decode("utf-8"), title)
        except UnicodeDecodeError:
            fixed = None
        if fixed is not None:
            msg = (
                f"movie {movie} has the title {quote(title)}, UTF-8 text that was read as "
                f"ISO-8859-1 and saved again (mojibake); it should read {quote(fixed)}"
            )
            raise DataError(msg, path=path, line=line)
    control = _CONTROL.search(title)
    if control is not None:
        msg = (
            f"movie {movie} has the title {quote(title)}, which holds the control character "
            f"U+{ord(control.group()):04X}"
        )
        if "\u0080" <= control.group() <= "\u009f":
            msg += " (Windows-1252 text? expected ISO-8859-1 or UTF-8)"
        raise DataError(msg, path=path, line=line)


def quote(text: str) -> str:
    """
    ``repr`` of a piece of a data file for a message, cut short when long.
    """
    if len(text) <= _QUOTE_LIMIT:
        return repr(text)
    return f"{text[:40]!r}... ({len(text):,} characters)"


def require_file(path: Path, what: str) -> None:
    """
    Check that ``path`` is a regular file (a link to one is fine).

    Args:
        path: the file.
        what: what it is, for the message when it is missing ("movie titles file").

    Raises:
        DataError: naming the path when it is missing, a broken link, a folder or not a regular file.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        msg = "is a broken link, expected a file" if path.is_symlink() else f"{what} not found"
        raise DataError(msg, path=str(path)) from None
    except OSError as exc:
        msg = f"cannot read file ({exc.strerror or exc})"
        raise DataError(msg, path=str(path)) from None
    if stat.S_ISDIR(info.st_mode):
        msg = "is a folder, expected a file"
        raise DataError(msg, path=str(path))
    if not stat.S_ISREG(info.st_mode):
        msg = "is not a regular file (a pipe, socket or device), expected a file"
        raise DataError(msg, path=str(path))
