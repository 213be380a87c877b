"""
Shared Hypothesis strategies, and a tiny TOML writer for spec round trips.
"""

from __future__ import annotations

import math
import re
from typing import Any, get_args

import attrs
from hypothesis import strategies as st

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
