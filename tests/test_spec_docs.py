"""
Tests for llmrec.spec_docs: the generated reference is current and every spec field is documented.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import attrs
import pytest

from llmrec.errors import SpecError
from llmrec.spec import DatasetFormat, ProviderKind, Spec, SplitSpec, parse_spec
from llmrec.spec_docs import _ERROR_SOURCE, _ERROR_SPEC, field_docs, render_spec_reference, toml_type

DOCS = Path(__file__).parent.parent / "docs" / "spec.md"


def _spec_classes(cls: type = Spec) -> Iterator[type]:
    yield cls
    for hint in typing.get_type_hints(cls).values():
        for candidate in (hint, *get_args(hint)):
            if attrs.has(candidate):
                yield from _spec_classes(candidate)


SPEC_CLASSES = list(dict.fromkeys(_spec_classes()))


def test_docs_spec_md_is_current():
    """
    docs/spec.md is exactly what render_spec_reference() produces now.
    """
    current = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""

    assert current == render_spec_reference(), (
        "docs/spec.md is stale; regenerate it with: python -m llmrec.spec_docs > docs/spec.md"
    )


def test_spec_classes_found():
    """
    The walk from Spec reaches every table class, nested and array ones included.
    """
    names = {cls.__name__ for cls in SPEC_CLASSES}

    assert {"Spec", "SyntheticSpec", "VariantSpec", "ReportSpec"} <= names
    assert len(SPEC_CLASSES) == 1 + 17  # Spec and its seventeen tables (finetune.lora included)


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=[c.__name__ for c in SPEC_CLASSES])
def test_every_field_has_a_docstring(cls: type):
    """
    Every field of every spec class has a non-empty docstring under it.
    """
    docs = field_docs(cls)

    missing = [f.name for f in attrs.fields(cls) if not docs.get(f.name, "").strip()]
    assert missing == [], f"{cls.__name__} fields without a docstring: {missing}"


def test_field_docs_reads_the_string_under_each_field():
    """
    field_docs maps each field to the string literal written right under it.
    """
    docs = field_docs(SplitSpec)

    assert list(docs) == ["train", "validation", "test"]
    assert docs["test"] == "Share of users scored in the report."


def test_field_docs_skips_fields_without_a_string():
    """
    A field with no string under it gets no entry.
    """

    @attrs.frozen
    class Partly:
        documented: int = 1
        """Has a docstring."""

        bare: int = 2

    assert field_docs(Partly) == {"documented": "Has a docstring."}


def test_literal_choices_listed_from_the_literal():
    """
    A Literal field's type lists every choice of the Literal, in order.
    """
    assert toml_type(ProviderKind) == "one of " + " | ".join(f'"{c}"' for c in get_args(ProviderKind))
    assert toml_type(DatasetFormat) == 'one of "netflix" | "movielens" | "synthetic"'


@pytest.mark.parametrize(
    ("hint", "name"),
    [
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (tuple[int, ...], "array of integers"),
        (int | None, "optional integer"),
        (str | None, "optional string"),
    ],
)
def test_toml_type_names(hint: object, name: str):
    """
    Field types are named in TOML terms.
    """
    assert toml_type(hint) == name


def test_reference_shows_the_exact_error_text():
    """
    The Errors section holds the text the CLI prints for the embedded bad spec.
    """
    with pytest.raises(SpecError) as info:
        parse_spec(_ERROR_SPEC, source=_ERROR_SOURCE)

    text = render_spec_reference()

    assert len(info.value.problems) > 1
    assert f"```\nerror: {info.value}\n```" in text
    assert f"error: {_ERROR_SOURCE} has {len(info.value.problems)} problems\n" in text


def test_reference_sections_in_table_order():
    """
    The reference has one section per TOML table, in the order of the spec.
    """
    headers = [
        line.removeprefix("## ") for line in render_spec_reference().splitlines() if line.startswith("## [")
    ]

    assert headers == [
        "[experiment]",
        "[dataset]",
        "[dataset.synthetic]",
        "[sampling]",
        "[[variant]]",
        "[split]",
        "[prompt]",
        "[finetune]",
        "[finetune.lora]",
        "[provider]",
        "[provider.fake]",
        "[provider.openai]",
        "[provider.local]",
        "[inference]",
        "[evaluation]",
        "[report]",
        "[execution]",
    ]


def test_all_defaults_block_parses_to_the_default_spec():
    """
    The 'All defaults' TOML block in the reference parses to Spec().
    """
    text = render_spec_reference()
    block = text.split("## All defaults", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]

    assert parse_spec(block) == Spec()
