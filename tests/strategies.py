"""
Shared Hypothesis strategies, and a tiny TOML writer for spec round trips.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, get_args

import attrs
from hypothesis import strategies as st

from llmrec.data import Movies
from llmrec.spec import (
    DatasetFormat,
    DatasetSpec,
    EvaluationSpec,
    ExperimentSpec,
    FinetuneSpec,
    InferenceSpec,
    LoraSpec,
    PromptSpec,
    ProviderKind,
    ProviderSpec,
    ReportSpec,
    SamplingSpec,
    Spec,
    SplitSpec,
    SyntheticSpec,
    VariantSpec,
)

# Any text TOML can hold: no surrogates (not encodable in UTF-8).
texts = st.text(st.characters(codec="utf-8"), max_size=30)
names = texts.filter(lambda s: s.strip() != "")
small_ints = st.integers(min_value=1, max_value=10**9)
shares = st.floats(min_value=0.0, max_value=1.0, exclude_min=True)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """
    The strategy's values or None.
    """
    return st.none() | strategy


experiment_specs = st.builds(
    ExperimentSpec,
    name=names.filter(lambda s: "/" not in s),
    seed=st.integers(min_value=0, max_value=2**63 - 1),
)

synthetic_specs = st.builds(
    SyntheticSpec,
    users=small_ints,
    movies=st.integers(min_value=20, max_value=10**6),
    mean_ratings=st.integers(min_value=10, max_value=10**4),
    tastes=small_ints,
)


@st.composite
def dataset_specs(draw: st.DrawFn) -> DatasetSpec:
    """
    Dataset specs; a path is always set for formats other than "synthetic".
    """
    fmt: DatasetFormat = draw(st.sampled_from(get_args(DatasetFormat)))
    path = draw(texts if fmt != "synthetic" else optional(texts))
    return DatasetSpec(format=fmt, path=path, synthetic=draw(synthetic_specs))


sampling_specs = st.builds(
    SamplingSpec,
    users=small_ints,
    min_five_star_ratings=st.integers(min_value=0, max_value=1000),
    profile_size=small_ints,
    neighbor_min_stars=st.integers(min_value=1, max_value=5),
    neighbor_min_shared=small_ints,
    neighbors=small_ints,
    watch_factor=shares,
    max_ground_truth=small_ints,
)


def variant_specs(name: str) -> st.SearchStrategy[VariantSpec]:
    """
    Variants with the given name and any overrides.
    """
    return st.builds(
        VariantSpec,
        name=st.just(name),
        neighbor_min_stars=optional(st.integers(min_value=1, max_value=5)),
        neighbor_min_shared=optional(small_ints),
        neighbors=optional(small_ints),
        watch_factor=optional(shares),
        max_ground_truth=optional(small_ints),
        model=optional(texts),
    )


@st.composite
def split_specs(draw: st.DrawFn) -> SplitSpec:
    """
    Splits whose shares are whole percentages summing to 100.
    """
    train = draw(st.integers(min_value=1, max_value=98))
    validation = draw(st.integers(min_value=0, max_value=99 - train))
    return SplitSpec(train=train / 100, validation=validation / 100, test=(100 - train - validation) / 100)


prompt_specs = st.builds(
    PromptSpec,
    task=texts,
    output_format=texts,
    user_template=st.tuples(texts, texts).map(lambda ab: ab[0] + "{profile}" + ab[1]),
    n_recommendations=small_ints,
)

finetune_specs = st.builds(
    FinetuneSpec,
    base_model=texts,
    batch_size=small_ints,
    epochs=small_ints,
    learning_rate_multiplier=optional(st.floats(min_value=0.0, max_value=100.0, exclude_min=True)),
    learning_rate=optional(st.floats(min_value=1e-7, max_value=1.0)),
    lora=optional(st.builds(LoraSpec, rank=small_ints, alpha=small_ints)),
    seed=optional(st.integers(min_value=0, max_value=2**31 - 1)),
    model=optional(texts),
)

provider_specs = st.builds(ProviderSpec, kind=st.sampled_from(get_args(ProviderKind)))

inference_specs = st.builds(
    InferenceSpec,
    temperature=st.floats(min_value=0.0, max_value=2.0),
    seed=optional(st.integers(min_value=0, max_value=2**31 - 1)),
)

evaluation_specs = st.builds(
    EvaluationSpec,
    k=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=5).map(tuple),
)

report_specs = st.builds(ReportSpec, title=texts)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """
    Valid whole specs: unique variant names, a shared fine-tuned model only with a single variant.
    """
    variant_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    variants = tuple(draw(variant_specs(n)) for n in variant_names)
    finetune = draw(finetune_specs)
    if len(variants) > 1 and finetune.model is not None:
        finetune = attrs.evolve(finetune, model=None)
    provider = draw(provider_specs)
    # kind-specific settings only where the kind takes them
    if provider.kind == "local":
        finetune = attrs.evolve(finetune, learning_rate_multiplier=None)
    if provider.kind == "openai":
        finetune = attrs.evolve(finetune, learning_rate=None, lora=None)
    return Spec(
        experiment=draw(experiment_specs),
        dataset=draw(dataset_specs()),
        sampling=draw(sampling_specs),
        variant=variants,
        split=draw(split_specs()),
        prompt=draw(prompt_specs),
        finetune=finetune,
        provider=provider,
        inference=draw(inference_specs),
        evaluation=draw(evaluation_specs),
        report=draw(report_specs),
    )


# A TOML writer just big enough for unstructured specs and the fuzzed documents below.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(document: dict[str, Any]) -> str:
    """
    Write a dict of TOML values as TOML text; keys whose value is None are left out.

    Tables become ``[a.b]`` sections and lists of tables ``[[a]]`` sections, so the text reads like a
    hand-written spec.
    """
    lines: list[str] = []
    _write_table(document, [], lines)
    return "\n".join(lines) + "\n"


def _write_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    subtables: list[tuple[str, list[dict[str, Any]], bool]] = []
    for key, value in table.items():
        if value is None:
            continue
        if isinstance(value, dict):
            subtables.append((key, [value], False))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            subtables.append((key, value, True))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value, is_array in subtables:
        header = ".".join(_key(k) for k in [*path, key])
        for item in value:
            lines.extend(["", f"[[{header}]]" if is_array else f"[{header}]"])
            _write_table(item, [*path, key], lines)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    msg = f"cannot write {value!r} as TOML"
    raise TypeError(msg)


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# Fuzzed spec documents: the right table and key names mixed with typos, any TOML values.

_scalars = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.text(st.characters(codec="utf-8"), max_size=5)
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)
_table_keys = st.sampled_from(
    ["users", "neighbors", "watch_factor", "name", "kind", "format", "path", "k", "train", "test", "epoch"]
)


@st.composite
def raw_spec_documents(draw: st.DrawFn) -> dict[str, Any]:
    """
    Dicts shaped roughly like a spec (known table names, known and unknown keys), with any values.
    """
    tables = st.sampled_from(
        ["experiment", "dataset", "sampling", "split", "finetune", "provider", "evaluation", "sampler"]
    )
    document: dict[str, Any] = draw(
        st.dictionaries(tables, st.dictionaries(_table_keys, _values, max_size=3))
    )
    if draw(st.booleans()):
        document["variant"] = draw(st.lists(st.dictionaries(_table_keys, _values, max_size=3), max_size=3))
    if draw(st.booleans()):
        document.setdefault("dataset", {})["synthetic"] = draw(
            st.dictionaries(_table_keys, _values, max_size=2) | _scalars
        )
    return document


# Model answers: any text at all, hostile fragments, and lists or JSON built from a known catalogue.

# every code point, lone surrogates often
any_code_points = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\u200b"]),
)


def any_texts(max_size: int) -> st.SearchStrategy[str]:
    """
    Strings of any code points, lone surrogates included: ``st.text`` never yields surrogates (seen
    with Hypothesis 6.170, whatever the alphabet), so the characters are drawn one by one and joined.
    """
    return st.lists(any_code_points, max_size=max_size).map("".join)


ANSWER_FRAGMENTS = (
    "1. ",
    "2) ",
    "10: ",
    "- ",
    "* ",
    "• ",
    "– ",
    "\n",
    "\r\n",
    " ",
    "\t",
    "\u00a0",
    "(1999)",
    "[2001]",
    '"',
    "“",
    "”",
    "**",
    "__",
    ":",
    ",",
    ";",
    " and ",
    " & ",
    ".",
    "Mr. ",
    "```json\n",
    "```",
    "[",
    "]",
    "{",
    "}",
    '{"movies": [',
    '{"title": ',
    '"year": ',
    "NaN",
    "1e999",
    "9" * 700,
    "null",
    "\\",
    "\\u",
    "\\ud800",
    "\ud800",
    "\udfff",
    "\x00",
    "\x1b[0m",
    "\u200b",
    "\u202e",
    "\ufeff",
    "\u2028",
    "🎬",
    "Heat",
    "Ronin",
    "Hamlet",
    "The Grifters",
    "Amélie",
    "I recommend",
)
"""Pieces that steer the parser into every branch: list markers, quotes, JSON, years, odd code points."""

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_texts(20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["title", "year", "movies", "x"]), inner, max_size=3)
    ),
    max_leaves=12,
)
answer_texts = st.one_of(
    any_texts(200),
    st.lists(st.sampled_from(ANSWER_FRAGMENTS) | any_texts(4), max_size=40).map("".join),
    st.builds(json.dumps, _json_values, ensure_ascii=st.booleans()),
    st.builds(
        json.dumps,
        st.lists(
            any_texts(10) | st.fixed_dictionaries({"title": any_texts(10)}, optional={"year": _json_values}),
            max_size=5,
        ).map(lambda entries: {"movies": entries}),
    ),
)
"""Any answer text: arbitrary code points, a jumble of hostile fragments, or any JSON (lone surrogates
spelt as escapes)."""

# Titles that read back exactly from a list line or JSON: words of letters and digits with inner
# punctuation, single spaces, no character the item reader strips or splits at (* _ " ( [ newline).
_TITLE_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüñøÅß"
_title_words = st.text(st.sampled_from(_TITLE_LETTERS + "0123456789'.:,!?&-"), min_size=1, max_size=8)
catalogue_titles = st.builds(
    lambda first, rest: " ".join([first, *rest]),
    st.text(st.sampled_from(_TITLE_LETTERS), min_size=1, max_size=8),
    st.lists(_title_words, max_size=5),
)


@st.composite
def catalogues(draw: st.DrawFn, min_size: int = 1, max_size: int = 12) -> Movies:
    """
    Small catalogues whose titles differ even after normalisation (each title names one movie).
    """
    from llmrec.parsing import normalize_title

    titles = draw(
        st.lists(catalogue_titles, min_size=min_size, max_size=max_size, unique_by=normalize_title).filter(
            lambda ts: all(normalize_title(t) for t in ts)
        )
    )
    years = draw(st.lists(st.integers(1900, 2030), min_size=len(titles), max_size=len(titles)))
    return Movies(ids=list(range(1, len(titles) + 1)), years=years, titles=titles)


@st.composite
def list_answers(draw: st.DrawFn, movies: Movies) -> tuple[str, list[int]]:
    """
    A list answer naming catalogue movies: (text, ids in order); markers, years, bold and chatter vary.
    """
    ids = draw(st.lists(st.sampled_from(movies.ids.tolist()), min_size=1, max_size=15))
    marker = draw(st.sampled_from(["{i}. ", "{i}) ", "{i}: ", "- ", "* ", "• "]))
    lines = [draw(st.sampled_from(["", "Here are my picks:", "Sure! Based on your profile:"]))]
    for i, movie in enumerate(ids, start=1):
        title = movies.titles[movie - 1]
        year = int(movies.years[movie - 1])
        bold = draw(st.booleans())
        body = f"**{title}**" if bold else title
        if draw(st.booleans()):
            body += f" ({year})" + draw(st.sampled_from(["", " - a classic", ": worth it"]))
        lines.append(marker.format(i=i) + body)
    lines.append(draw(st.sampled_from(["", "Enjoy!", "Let me know if you want more."])))
    return "\n".join(lines), ids


@st.composite
def json_answers(draw: st.DrawFn, movies: Movies) -> tuple[str, list[int]]:
    """
    A JSON answer naming catalogue movies, in any of the shapes read: (text, ids in order).
    """
    ids = draw(st.lists(st.sampled_from(movies.ids.tolist()), min_size=1, max_size=15))
    entries: list[Any] = []
    for movie in ids:
        title = movies.titles[movie - 1]
        year = int(movies.years[movie - 1])
        shapes = [title, f"{title} ({year})", {"title": title}, {"title": title, "year": year}]
        entries.append(draw(st.sampled_from([*shapes, {"title": title, "year": str(year)}])))
    document: Any = draw(st.sampled_from([entries, {"movies": entries}, {"recommendations": entries}]))
    text = json.dumps(document, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))
    if draw(st.booleans()):
        text = f"Here you go:\n```json\n{text}\n```\nEnjoy!"
    return text, ids


@st.composite
def respaced_titles(draw: st.DrawFn, title: str) -> str:
    """
    ``title`` with its ASCII letters' case flipped at random, each space a run of other whitespace,
    and zero-width or direction marks sprinkled in: the same title after normalisation.
    """
    out = []
    for ch in title:
        if ch == " ":
            out.append(draw(st.text(st.sampled_from(" \t\u00a0\u2003\u3000"), min_size=1, max_size=3)))
            continue
        out.append(ch.swapcase() if ch.isascii() and ch.isalpha() and draw(st.booleans()) else ch)
        if draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from(["\u200b", "\u200e", "\u2060", "\ufeff"])))
    pad = st.text(st.sampled_from(" \t"), max_size=2)
    return draw(pad) + "".join(out) + draw(pad)


# Spec texts: TOML-like lines (headers, key = value, junk) in any order, and valid specs with noise.

_toml_values = st.sampled_from(
    [
        "1",
        "-3",
        "0",
        "9223372036854775808",
        "1.5",
        "nan",
        "inf",
        "-inf",
        "1e999",
        "true",
        "false",
        '"x"',
        '""',
        "'lit'",
        '"""multi\nline"""',
        "[]",
        "[1, 2]",
        '["a", 1]',
        "[[1], [2]]",
        "{}",
        "{a = 1}",
        '{name = "x"}',
        "1979-05-27",
        "07:32:00",
        "1979-05-27T07:32:00Z",
        '"\\u00e9"',
        "0x10",
        "1_000",
        '"demo"',
        '"netflix"',
        '"synthetic"',
        '"fake"',
        '"openai"',
        "0.5",
        "10",
    ]
)
_toml_keys = st.sampled_from(
    [
        "users", "neighbors", "watch_factor", "name", "kind", "format", "path", "k", "train", "test",
        "epoch", "seed", "title", "model", "base_model", "epochs", "batch_size", "rank", "alpha",
        "temperature", "matching", "fuzzy_threshold", '"quoted key"', '"a\\nb"', "a.b", "x",
    ]
)  # fmt: skip
_toml_headers = st.sampled_from(
    [
        "[experiment]", "[dataset]", "[dataset.synthetic]", "[sampling]", "[[variant]]", "[split]",
        "[prompt]", "[finetune]", "[finetune.lora]", "[provider]", "[provider.fake]",
        "[provider.openai]", "[provider.local]", "[inference]", "[evaluation]", "[report]",
        "[sampler]", "[[experiment]]", "[variant]", "[evaluation.k]",
    ]
)  # fmt: skip
toml_texts = st.lists(
    _toml_headers
    | st.builds(lambda k, v: f"{k} = {v}", _toml_keys, _toml_values)
    | st.text(st.characters(codec="utf-8"), max_size=10),
    max_size=15,
).map("\n".join)
"""Text mostly shaped like TOML spec lines, often invalid TOML or an invalid spec."""


@st.composite
def noisy_spec_documents(draw: st.DrawFn) -> dict[str, Any]:
    """
    A valid spec as TOML values with one to three edits: a value replaced by any TOML value, a key
    added to a table, or a key removed.
    """
    from llmrec.spec import _CONVERTER

    document: dict[str, Any] = _CONVERTER.unstructure(draw(specs()))
    for _ in range(draw(st.integers(1, 3))):
        tables = _tables_in(document)
        table = draw(st.sampled_from(tables))
        action = draw(st.sampled_from(["replace", "add", "remove"]))
        keys = [k for k, v in table.items() if v is not None and not isinstance(v, dict | list)]
        if action == "add" or not keys:
            table[draw(_table_keys | st.text(st.characters(codec="utf-8"), min_size=1, max_size=5))] = draw(
                _values
            )
        elif action == "replace":
            table[draw(st.sampled_from(keys))] = draw(
                _values | st.dictionaries(_table_keys, _values, max_size=2)
            )
        else:
            del table[draw(st.sampled_from(keys))]
    return document


def _tables_in(document: dict[str, Any]) -> list[dict[str, Any]]:
    out = [document]
    for value in document.values():
        if isinstance(value, dict):
            out += _tables_in(value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                out += _tables_in(item)
    return out
