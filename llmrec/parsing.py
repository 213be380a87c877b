"""
Reading model text back into movies: the answer's items, then each title grounded in the catalogue.

Rules (docs/scoring.md has the reader's view, docs/metrics.md the full rules):

- **Formats**, tried in this order: a JSON answer (the text, or its first fenced code block, starts
  with ``[`` or ``{``: an array of strings or of objects with a ``"title"`` and optional ``"year"``, or
  an object ``{"movies": [...]}``; JSON that cannot be read is a failure unless list lines follow);
  numbered ("1.", "1)", "1:") or bulleted ("-", "*", "+", "•", "–") lines; the rows of a markdown
  table (its "Title" column) or the items of an HTML list (``<li>``); prose as a last resort (two or
  more double-quoted titles; an enumeration after a colon; a one-line enumeration whose every piece
  names a catalogue movie). With none, the text is a parse failure (scored 0, kept in the mean).
- **Title and year**: the first "(1999)" ends the title and gives the year; what follows it is a
  description and dropped. A title set in bold or quotes at the start of an item ends there.
- **Grounding**: exact title, else the normalised title (``normalize_title``), else, when a
  ``fuzzy_threshold`` is given, the closest normalised catalogue title by rapidfuzz's token-sort ratio
  (0-100) if it reaches the threshold, else unmatched. A year narrows a title shared by several movies
  to those of that year when one matches; otherwise all are kept (a hit if any is relevant).
- An item that matches nothing keeps its rank as a miss; ``answer_flags`` summarises one answer.
- **Hostile answers** never raise and take bounded time: an answer longer than ``MAX_ANSWER_CHARS``
  is a failure without being read, JSON nested deeper than ``MAX_JSON_DEPTH`` is a failure, a JSON
  integer of more than 640 digits is read as an infinite number (never a year), lone surrogates are
  replaced (``llmrec.text.safe_text``), and no pattern here backtracks more than linearly.
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any, Literal

import attrs
from rapidfuzz import fuzz, process

from llmrec.data import Movies
from llmrec.text import safe_text

__all__ = [
    "FAILURES",
    "MAX_ANSWER_CHARS",
    "MAX_JSON_DEPTH",
    "AnswerFlags",
    "AnswerFormat",
    "MatchKind",
    "ParsedItem",
    "ParsedList",
    "TitleMatcher",
    "answer_flags",
    "normalize_title",
    "parse_recommendations",
]

MatchKind = Literal["exact", "normalized", "fuzzy", "unmatched"]
AnswerFormat = Literal["list", "json", "prose", "none"]

MAX_ANSWER_CHARS = 100_000
"""Longer answers are a failure without being read (an answer of ten titles takes a few hundred)."""
MAX_JSON_DEPTH = 32
"""JSON nested deeper than this (arrays and objects) is a failure without being decoded."""

FAILURES: Mapping[str, str] = MappingProxyType(
    {
        "empty": "answer is empty",
        "too_long": f"answer is {{chars:,}} characters long; at most {MAX_ANSWER_CHARS:,} are read",
        "json_syntax": "JSON answer could not be read: {msg} (character {pos})",
        "json_depth": f"JSON answer is nested more than {MAX_JSON_DEPTH} levels deep",
        "json_shape": 'JSON answer is neither an array nor an object with a "movies" array',
        "nothing": "no list item, JSON answer or prose enumeration found",
    }
)
"""Every ``ParsedList.failure``, by name: templates to ``str.format`` with the fields shown."""

# Patterns read model text, so none may backtrack more than linearly: a quantifier next to one that
# can match the same characters is possessive (``*+``) or starts only after a non-space (``(?<!\s)``).
_ITEM = re.compile(r"^\s*+(?:\d{1,3}\s*+[.):]|[-*+•–])\s++(?P<body>\S(?:.*\S)?)\s*+$")
_SPACES = re.compile(r"\s+")


@attrs.frozen
class ParsedItem:
    """
    One list item: the text as written, the title and year read from it, and the movies it matched.
    """

    text: str
    title: str
    year: int | None
    movie_ids: tuple[int, ...]
    match: MatchKind
    score: float | None = None
    """The best fuzzy score (0-100) when fuzzy matching was tried (``fuzzy`` or ``unmatched``)."""


@attrs.frozen
class ParsedList:
    """
    The items of one answer, in order; ``failure`` says why nothing could be read, else None.
    """

    items: tuple[ParsedItem, ...]
    failure: str | None = None
    format: AnswerFormat = "list"
    """Where the items came from: a ``list`` of lines, ``json``, ``prose``, or ``none`` (a failure)."""
    dropped: int = 0
    """Items read beyond the number asked for, cut off."""


# --- normalisation ------------------------------------------------------------------------------------

_TRAILING_YEAR = re.compile(r"(?<!\s)\s*+[(\[]\d{4}[)\]]\s*+$")
_TRAILING_ARTICLE = re.compile(r",\s*(?:the|a|an)$")
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+")
_APOSTROPHES = re.compile(r"['’‘`´]")
_NON_WORD = re.compile(r"[\W_]+")


def normalize_title(title: str) -> str:
    """
    The form titles are compared in: accents, case, punctuation, articles and a trailing year removed.

    Steps: Unicode NFKD with combining marks and invisible format characters (zero-width spaces and
    joiners, direction marks, soft hyphens: category Cf) dropped ("Amélie" -> "amelie"), case
    folding, "&" read as "and", a trailing "(1999)" dropped, apostrophes deleted ("Schindler's" ->
    "schindlers"), a MovieLens-style trailing ", The" / ", A" / ", An" dropped, every other run of
    punctuation or spaces made one space, then a leading "the", "a" or "an" dropped (unless that
    leaves nothing).
    "The Shawshank Redemption (1994)" and "Shawshank Redemption, The" both give "shawshank redemption".
    """
    text = title
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c) and unicodedata.category(c) != "Cf")
    text = text.casefold().replace("&", " and ")
    text = _TRAILING_YEAR.sub("", text.strip())
    text = _APOSTROPHES.sub("", text)
    text = text.strip(' \t*_"“”.,;:!?')
    text = _TRAILING_ARTICLE.sub("", text)
    text = _NON_WORD.sub(" ", text).strip()
    return _LEADING_ARTICLE.sub("", text) or text


_PAREN_TAIL = re.compile(r"^(?P<main>.+?)(?<!\s)\s*+\((?P<inner>[^()]++)\)$")
_AKA = re.compile(r"^(?:a\.?k\.?a\.?|aka)\s+", re.IGNORECASE)


def _aliases(title: str) -> list[str]:
    """
    Other normalised names of a catalogue title ending in a parenthesis (MovieLens style): the title
    without it, and the parenthesis itself less an "a.k.a." when it has at least four characters.
    "Seven (a.k.a. Se7en)" -> "seven", "se7en".
    """
    m = _PAREN_TAIL.match(title.strip())
    if m is None or m.group("inner").strip().isdigit():
        return []
    inner = normalize_title(_AKA.sub("", m.group("inner").strip()))
    return [normalize_title(m.group("main")), *([inner] if len(inner) >= 4 else [])]


def _token_sort(key: str) -> str:
    return " ".join(sorted(key.split()))


# --- grounding ----------------------------------------------------------------------------------------

_MAX_FUZZY_CHARS = 500
"""Longer (normalised) titles skip the fuzzy step: no movie title is this long (Netflix's longest has
108 characters), and scoring 100,000 characters against 17,770 titles takes seconds."""

_FUZZY_MEMO = 1 << 16
"""Fuzzy lookups a ``TitleMatcher`` remembers (a few MiB): made-up titles recur across answers."""

_Entries = dict[str, list[tuple[int, int]]]


def _narrow(found: list[tuple[int, int]], year: int | None) -> tuple[int, ...]:
    same_year = [m for m, y in found if year is not None and y == year]
    return tuple(sorted(set(same_year or [m for m, _ in found])))


class TitleMatcher:
    """
    Looks titles up in a catalogue: exactly, after normalisation, then (optionally) fuzzily.

    Normalised lookup tries the catalogue's own titles first, then their aliases (``_aliases``).
    The fuzzy choices (every normalised title and alias, tokens sorted) are built once here, so a
    lookup in the 17,770-title Netflix catalogue takes milliseconds.
    """

    def __init__(self, movies: Movies) -> None:
        self._exact: _Entries = defaultdict(list)
        self._normal: _Entries = defaultdict(list)
        self._alias: _Entries = defaultdict(list)
        for movie_id, year, title in zip(
            movies.ids.tolist(), movies.years.tolist(), movies.titles, strict=True
        ):
            self._exact[title].append((movie_id, year))
            key = normalize_title(title)
            if key:
                self._normal[key].append((movie_id, year))
            for alias in _aliases(title):
                if alias and alias != key:
                    self._alias[alias].append((movie_id, year))
        self._choices: list[str] = sorted({*self._normal, *self._alias})
        self._sorted_choices = [_token_sort(c) for c in self._choices]
        # the best fuzzy choice of each token-sorted key looked up (answers repeat made-up titles)
        self._fuzzy: dict[str, tuple[float, int] | None] = {}

    def match(self, title: str, year: int | None) -> tuple[tuple[int, ...], MatchKind]:
        """
        The movie ids a title (and optional year) names, and how they were found (no fuzzy step).
        """
        ids, kind, _ = self.ground(title, year)
        return ids, kind

    def ground(
        self, title: str, year: int | None, *, fuzzy_threshold: float | None = None
    ) -> tuple[tuple[int, ...], MatchKind, float | None]:
        """
        The movie ids a title (and optional year) names, how they were found, and the fuzzy score.

        Args:
            title: the title as read from the answer.
            year: the year given with it, if any; it narrows a shared title to the movies of that year.
            fuzzy_threshold: the least token-sort ratio (0-100) a fuzzy match needs; None: no fuzzy step.

        Returns:
            (ids, kind, score): ``score`` is the best fuzzy score when the fuzzy step ran, else None.
            The fuzzy step never runs for a normalised title of more than 500 characters.

        Raises:
            ValueError: when ``fuzzy_threshold`` lies outside [0, 100].
        """
        if fuzzy_threshold is not None and not 0 <= fuzzy_threshold <= 100:
            msg = f"fuzzy_threshold must lie in [0, 100], got {fuzzy_threshold!r}"
            raise ValueError(msg)
        found = self._exact.get(title)
        if found:
            return _narrow(found, year), "exact", None
        key = normalize_title(title)
        if not key:
            return (), "unmatched", None
        found = self._normal.get(key) or self._alias.get(key)
        if found:
            return _narrow(found, year), "normalized", None
        if fuzzy_threshold is None or not self._choices or len(key) > _MAX_FUZZY_CHARS:
            return (), "unmatched", None
        best = self._best_fuzzy(_token_sort(key))
        if best is None:
            return (), "unmatched", None
        score, index = best
        if score < fuzzy_threshold:
            return (), "unmatched", float(score)
        choice = self._choices[index]
        entries = self._normal.get(choice) or self._alias[choice]
        return _narrow(entries, year), "fuzzy", float(score)

    def _best_fuzzy(self, query: str) -> tuple[float, int] | None:
        """
        The best fuzzy choice for a token-sorted key (score, index in the choices), remembered for the
        next answer that names it (up to ``_FUZZY_MEMO`` keys).
        """
        if query in self._fuzzy:
            return self._fuzzy[query]
        found = process.extractOne(query, self._sorted_choices, scorer=fuzz.ratio, processor=None)
        best = None if found is None else (found[1], found[2])
        if len(self._fuzzy) < _FUZZY_MEMO:
            self._fuzzy[query] = best
        return best

    def is_known(self, title: str, year: int | None = None) -> bool:
        """
        Whether a title names a catalogue movie exactly or after normalisation.
        """
        return bool(self.ground(title, year)[0])


# --- reading the answer -------------------------------------------------------------------------------

_Raw = tuple[str, str, int | None]
"""(text as written, title, year) of one item before grounding."""
_Item = Callable[[], _Raw]
"""One item read but not yet split into title and year: only the first ``n`` ever are."""

_LEAD_TITLE = re.compile(r'^(?:\*\*|__|["“])(?P<title>.+?)(?:\*\*|__|["”])(?P<rest>.*)$')
_YEAR_IN = re.compile(r"^(?P<title>.*?)(?<!\s)\s*+[(\[](?P<year>(?:18|19|20)\d{2})[)\]](?P<rest>.*)$")
_YEAR_NEXT = re.compile(r"^\s*+[(\[](?P<year>(?:18|19|20)\d{2})[)\]]")


def _clean(title: str) -> str:
    title = title.replace("**", "").replace("__", "")
    return _SPACES.sub(" ", title.strip().strip('*_"“”').strip())


def _split_title(body: str) -> tuple[str, int | None]:
    """
    Title and year of an item: the first "(1999)" ends the title; a bold or quoted title ends itself.
    """
    text = body.strip()
    lead = _LEAD_TITLE.match(text)
    if lead:
        inner = _YEAR_IN.match(lead.group("title"))
        if inner and inner.group("title").strip():
            return _clean(inner.group("title")), int(inner.group("year"))
        after = _YEAR_NEXT.match(lead.group("rest"))
        return _clean(lead.group("title")), int(after.group("year")) if after else None
    m = _YEAR_IN.match(text)
    if m and _clean(m.group("title")):
        return _clean(m.group("title")), int(m.group("year"))
    return _clean(text), None


def _raw(text: str) -> _Raw:
    return (text, *_split_title(text))


_TABLE_RULE = re.compile(r"\s*+:?-++:?\s*+")
_TITLE_HEADERS = ("title", "movie", "film", "name")
_MAX_COLUMNS = 20
"""Only a table's first columns are looked at for the title and the year (bounded time)."""


def _table_items(text: str) -> list[_Item]:
    """
    The rows of the first markdown table with a header, a rule row (``|---|---|``) and body rows:
    each row's cell under the first header naming a title ("Title", "Movie", "Film", "Name"; else the
    first column that is not a rank number), with the cell under a "Year" header as its year; only
    the first ``_MAX_COLUMNS`` columns are looked at.
    """
    lines = [line.strip() for line in text.splitlines()]
    for r in range(1, len(lines) - 1):
        if not (lines[r].startswith("|") and lines[r - 1].startswith("|")):
            continue
        if not _is_rule(lines[r]) or _is_rule(lines[r - 1]):
            continue
        header = [c.strip().casefold() for c in _cells(lines[r - 1])][:_MAX_COLUMNS]
        rows = []
        for line in lines[r + 1 :]:
            if not line.startswith("|"):
                break
            if not _is_rule(line):
                rows.append([c.strip() for c in _cells(line)])
        titled = [i for i, h in enumerate(header) if any(w in h for w in _TITLE_HEADERS)]
        plain = [
            i
            for i in range(len(header))
            if not all(row[i].rstrip(".").isdigit() for row in rows if i < len(row))
        ]
        if not rows or not (titled or plain):
            return []
        column = (titled or plain)[0]
        year = next((i for i, h in enumerate(header) if "year" in h and i != column), None)
        out: list[_Item] = []
        for row in rows:
            title = row[column] if column < len(row) else ""
            given = row[year] if year is not None and year < len(row) else ""
            out.append(partial(_raw, f"{title} ({given})" if re.fullmatch(r"\d{4}", given) else title))
        return out
    return []


_HTML_ITEM = re.compile(r"<li\b[^<>]{0,200}>", re.IGNORECASE)
_HTML_ITEM_END = re.compile(r"</li\s*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^<>]{0,200}>")


def _html_items(text: str) -> list[_Item]:
    """
    The ``<li>`` items of an HTML list, their tags removed and entities decoded ("&amp;" -> "&").
    """
    if not _HTML_ITEM.search(text):
        return []
    flat = _HTML_ITEM_END.sub("\n", _HTML_ITEM.sub("\n- ", text))
    flat = html.unescape(_HTML_TAG.sub(" ", flat))
    return [partial(_raw, m.group("body")) for line in flat.splitlines() if (m := _ITEM.match(line))]


def _is_rule(line: str) -> bool:
    return all(_TABLE_RULE.fullmatch(c) for c in _cells(line))


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") else body
    return body.split("|")


_FENCE = re.compile(r"```[A-Za-z]*+[ \t]*+\n(?P<body>.*?)```", re.DOTALL)


def _json_document(text: str) -> str | None:
    """
    The JSON part of an answer: its first fenced block that starts like JSON, else the whole text when
    it starts with "[" or "{"; None when the answer does not look like JSON.
    """
    for m in _FENCE.finditer(text):
        body = m.group("body").strip()
        if body.startswith(("[", "{")):
            return body
    stripped = text.strip()
    return stripped if stripped.startswith(("[", "{")) else None


def _json_year(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1800 <= value <= 2100:
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d{4}\s*", value):
        return int(value)
    return None


_JSON_TOKENS = re.compile(r'[\[\]{}"\\]')
_JSON_STRING_TOKENS = re.compile(r'["\\]')
_INT_DIGITS = 640
"""Longer JSON integers are read as infinite: ``int()`` accepts this many digits under any setting."""


def _json_int(digits: str) -> int | float:
    if len(digits.lstrip("-")) <= _INT_DIGITS:
        return int(digits)
    return -math.inf if digits.startswith("-") else math.inf


_DECODER = json.JSONDecoder(parse_int=_json_int)


def _too_deep(document: str) -> bool:
    """
    Whether the first JSON value of ``document`` nests arrays or objects more than ``MAX_JSON_DEPTH``
    deep; a linear scan from bracket to bracket (skipping strings), so decoding never recurses far.
    """
    depth = 0
    pos = 0
    in_string = False
    while m := (_JSON_STRING_TOKENS if in_string else _JSON_TOKENS).search(document, pos):
        c, pos = m.group(), m.end()
        if c == "\\":
            if in_string:  # an escape skips the next character; outside a string it is a syntax error
                pos += 1
        elif c == '"':
            in_string = not in_string
        elif c in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
            if depth <= 0:
                return False
    return False


def _json_string(value: str) -> str:
    """A JSON string as a one-line item: runs of whitespace (newlines too) made one space."""
    return _SPACES.sub(" ", value).strip()


def _json_entry(entry: Any) -> _Raw:
    if isinstance(entry, str):
        return _raw(_json_string(entry))
    if isinstance(entry, dict) and isinstance(entry.get("title"), str):
        title, year = _split_title(_json_string(entry["title"]))
        given = _json_year(entry.get("year"))
        return json.dumps(entry, ensure_ascii=False), title, given if given is not None else year
    return json.dumps(entry, ensure_ascii=False), "", None


def _json_items(document: str) -> list[_Item] | str:
    """
    The items of a JSON answer, or why it could not be read.
    """
    if _too_deep(document):
        return FAILURES["json_depth"]
    try:
        value, _ = _DECODER.raw_decode(document)
    except json.JSONDecodeError as e:
        return FAILURES["json_syntax"].format(msg=e.msg, pos=e.pos)
    except RecursionError:  # cannot happen below MAX_JSON_DEPTH; kept so that no answer can crash a run
        return FAILURES["json_depth"]
    if isinstance(value, dict):
        entries = value.get("movies")
        if entries is None and len(value) == 1:
            entries = next(iter(value.values()))
        value = entries
    if not isinstance(value, list):
        return FAILURES["json_shape"]
    return [partial(_json_entry, entry) for entry in value]


_QUOTED = re.compile(r'["“](?P<title>[^"“”\n]{1,200}?)["”](?P<year>\s*[(\[](?:18|19|20)\d{2}[)\]])?')
_CONJUNCTION = re.compile(r"^(?:and|&)\s+", re.IGNORECASE)
_LAST_AND = re.compile(r"^(?P<head>.+)(?<!\s)\s++(?P<word>and|&)\s++(?P<tail>.+)$")
_SENTENCE_END = re.compile(r"[.!?]\s+(?=[A-Z\"“])")
_LAST_WORD = re.compile(r"(\S+)$")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "vol", "no", "pt"}
_MAX_WORDS = 12
_WORD_WINDOW = 40
"""How far back from a sentence end its last word is looked for (abbreviations are short)."""
_MAX_JOINED = 4
"""At most this many separators inside one title when pieces are joined again."""
_MAX_PIECES = 100
"""An enumeration is split into fewer pieces than this; a longer one is not read (bounded time)."""
_MAX_COLON_LINES = 10
"""Rule 2 of the prose reader looks at this many lines with a colon, at most."""
_MAX_SENTENCE = 10_000
"""A sentence read as an enumeration ends within this many characters (100 pieces of 12 words)."""


def _first_sentence(text: str) -> str:
    """
    ``text`` up to its first sentence end ("." "!" "?" then a capital), skipping "Mr.", "L.A." and the like;
    "" when no sentence ends within the first ``_MAX_SENTENCE`` characters of a longer text.
    """
    for m in _SENTENCE_END.finditer(text, 0, _MAX_SENTENCE):
        if text[m.start()] == ".":
            word = _LAST_WORD.search(text[max(0, m.start() - _WORD_WINDOW) : m.start()])
            w = word.group(1).casefold() if word else ""
            if w in _ABBREVIATIONS or "." in w or len(w) <= 1:
                continue
        return text[: m.start()]
    return text if len(text) <= _MAX_SENTENCE else ""


def _looks_like_title(piece: str) -> bool:
    bare = piece.strip('*_"“” ')
    if not bare or len(bare.split()) > _MAX_WORDS:
        return False
    first = bare[0]
    return first.isdigit() or first.isupper() or (first.isalpha() and not first.islower())


def _enumeration(segment: str, matcher: TitleMatcher) -> list[str]:
    """
    The pieces of "A, B and C" (or "A; B; C"): split on semicolons if any, else on commas and at the
    last piece's last "and"/"&"; then neighbours that together name a catalogue movie are joined
    again, longest first ("Crouching Tiger, Hidden Dragon", "The Good, the Bad and the Ugly").
    A segment of ``_MAX_PIECES`` or more separators is no enumeration (an empty list).
    """
    segment = segment.strip().rstrip(".!?").strip()
    separator = ";" if ";" in segment else ","
    if segment.count(separator) >= _MAX_PIECES:
        return []
    parts = [_CONJUNCTION.sub("", p.strip()).strip() for p in segment.split(separator)]
    seps = [f"{separator} "] * (len(parts) - 1)
    last = _LAST_AND.match(parts[-1])
    if last:
        parts[-1:] = [last.group("head").strip(), last.group("tail").strip()]
        seps.append(f" {last.group('word')} ")
    pieces: list[str] = []
    i = 0
    while i < len(parts):
        j = min(len(parts) - 1, i + _MAX_JOINED)
        while j > i and not matcher.is_known(*_split_title(_join(parts, seps, i, j))):
            j -= 1
        pieces.append(_join(parts, seps, i, j))
        i = j + 1
    return [p for p in pieces if p]


def _join(parts: list[str], seps: list[str], i: int, j: int) -> str:
    return parts[i] + "".join(seps[t] + parts[t + 1] for t in range(i, j))


def _prose_items(text: str, matcher: TitleMatcher) -> list[_Item]:
    """
    Items read from prose, by the first rule that applies (none: an empty list).

    1. Two or more double-quoted titles ("Heat" or “Heat”, a "(1995)" right after is the year).
    2. On the first line with a colon where this gives a list (of the first ``_MAX_COLON_LINES``
       lines with a colon), the text after the first colon, up to the end of its sentence, read as an
       enumeration of two or more pieces, each at most 12 words and starting with a capital or digit
       ("I recommend: Heat, Ronin and Hamlet.").
    3. A one-line answer that is an enumeration of two or more pieces, every one of which names a
       catalogue movie (exactly or after normalisation): "Heat, Ronin and Hamlet".
    """
    quoted = list(_QUOTED.finditer(text))
    if len(quoted) >= 2:
        return [partial(_raw, m.group(0).strip()) for m in quoted]
    for line in [line for line in text.splitlines() if ":" in line][:_MAX_COLON_LINES]:
        pieces = _enumeration(_first_sentence(line.split(":", 1)[1]), matcher)
        if len(pieces) >= 2 and all(_looks_like_title(p) for p in pieces):
            return [partial(_raw, p) for p in pieces]
    stripped = text.strip()
    if stripped and "\n" not in stripped:
        pieces = _enumeration(stripped, matcher)
        if len(pieces) >= 2 and all(matcher.is_known(*_split_title(p)) for p in pieces):
            return [partial(_raw, p) for p in pieces]
    return []


def parse_recommendations(
    text: str, matcher: TitleMatcher, n: int, *, fuzzy_threshold: float | None = None
) -> ParsedList:
    """
    Read a model's answer: its items (JSON, list lines, else prose), cut at ``n``, each grounded in
    the catalogue.

    Args:
        text: the raw model text.
        matcher: the catalogue lookup.
        n: the number of recommendations asked for; later items are dropped (counted in ``dropped``).
        fuzzy_threshold: the least rapidfuzz token-sort ratio (0-100) for a fuzzy match; None: off.

    Returns:
        The parsed list; ``failure`` is set (and ``items`` empty) when no item could be read.

    Never raises for any ``text``: an answer that cannot be read is a ``ParsedList`` whose ``failure``
    is one of ``FAILURES`` (filled in), and each answer takes bounded time (its length is capped at
    ``MAX_ANSWER_CHARS``). Every string in the result encodes as UTF-8 (``safe_text``).

    Raises:
        ValueError: when ``fuzzy_threshold`` lies outside [0, 100] or ``n`` is below 1.
    """
    if fuzzy_threshold is not None and not 0 <= fuzzy_threshold <= 100:
        msg = f"fuzzy_threshold must lie in [0, 100], got {fuzzy_threshold!r}"
        raise ValueError(msg)
    if n < 1:
        msg = f"n must be a positive integer, got {n!r}"
        raise ValueError(msg)
    if len(text) > MAX_ANSWER_CHARS:
        return ParsedList(items=(), failure=FAILURES["too_long"].format(chars=len(text)), format="none")
    if not text.strip():
        return ParsedList(items=(), failure=FAILURES["empty"], format="none")
    text = safe_text(text)
    document = _json_document(text)
    read = _json_items(document) if document is not None else None
    raws: list[_Item] = read if isinstance(read, list) else []
    form: AnswerFormat = "json"
    if not isinstance(read, list):
        raws = [partial(_raw, m.group("body")) for line in text.splitlines() if (m := _ITEM.match(line))]
        form = "list"
        if not raws:
            raws = _table_items(text) or _html_items(text)
        if not raws and read is None:  # prose would misread broken JSON's keys as quoted titles
            raws, form = _prose_items(text, matcher), "prose"
        if not raws:
            failure = read or FAILURES["nothing"]
            return ParsedList(items=(), failure=failure, format="json" if read else "none")
    items = []
    for item in raws[:n]:
        body, raw_title, year = item()
        title = safe_text(raw_title)  # JSON escapes can still spell lone surrogates
        ids, kind, score = matcher.ground(title, year, fuzzy_threshold=fuzzy_threshold)
        items.append(
            ParsedItem(text=safe_text(body), title=title, year=year, movie_ids=ids, match=kind, score=score)
        )
    return ParsedList(items=tuple(items), format=form, dropped=max(0, len(raws) - n))


# --- summary for reporting ----------------------------------------------------------------------------


@attrs.frozen
class AnswerFlags:
    """
    What went wrong in one answer, for rates per model (sum the counts, count the booleans).
    """

    parse_failure: bool
    """No item could be read."""
    items: int
    """Items read (after the cut at the number asked for)."""
    hallucinated: int
    """Items that name no catalogue movie (``unmatched``)."""
    duplicates: int
    """Items that name a movie an earlier item already named."""
    in_profile: int
    """Items that name a movie from the user's profile (one the prompt listed as already seen)."""
    short: bool
    """Fewer items than asked for, the answer being readable (a parse failure is not also short)."""
    fuzzy: int
    """Items grounded only by the fuzzy step."""
    dropped: int
    """Items beyond the number asked for."""


def answer_flags(parsed: ParsedList, profile_ids: Collection[int], n: int) -> AnswerFlags:
    """
    Summarise one parsed answer: failure, hallucinated, repeated and already-seen items, short list.

    An item with several ids (a shared title) is a duplicate when any of its ids was named by an
    earlier item, and in the profile when any of its ids is there.

    Args:
        parsed: the parsed answer.
        profile_ids: the movie ids of the user's profile, as shown in the prompt.
        n: the number of recommendations asked for.

    Raises:
        ValueError: when ``n`` is not positive.
    """
    if n <= 0:
        msg = f"n must be a positive integer, got {n!r}"
        raise ValueError(msg)
    profile = set(profile_ids)
    seen: set[int] = set()
    duplicates = in_profile = 0
    for item in parsed.items:
        ids = set(item.movie_ids)
        duplicates += bool(ids & seen)
        in_profile += bool(ids & profile)
        seen |= ids
    failed = parsed.failure is not None
    return AnswerFlags(
        parse_failure=failed,
        items=len(parsed.items),
        hallucinated=sum(item.match == "unmatched" for item in parsed.items),
        duplicates=duplicates,
        in_profile=in_profile,
        short=not failed and len(parsed.items) < n,
        fuzzy=sum(item.match == "fuzzy" for item in parsed.items),
        dropped=parsed.dropped,
    )
