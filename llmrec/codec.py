"""
The one cattrs converter for everything llmrec persists (results, predictions, stage records, stored
answers, fine-tune job states and events).

Pairs such as ``metrics: tuple[tuple[str, float], ...]`` are written as JSON objects and read back
as pairs in their order; non-finite floats are kept (JSON ``NaN``, as Python's json writes it).
A document carries ``schema_version``; ``check_schema`` refuses a version this llmrec does not know.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, get_args

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from llmrec.errors import StoreError

__all__ = ["CONVERTER", "check_schema", "make_converter"]


def _is_pairs(hint: Any) -> bool:
    if typing.get_origin(hint) is not tuple:
        return False
    args = get_args(hint)
    if len(args) != 2 or args[1] is not Ellipsis:
        return False
    inner = args[0]
    return typing.get_origin(inner) is tuple and len(get_args(inner)) == 2 and get_args(inner)[0] is str


def make_converter() -> cattrs.Converter:
    """
    A converter with the pair-tuple <-> object hooks.
    """
    conv = cattrs.Converter()

    def unstructure_pairs(value: Any) -> Any:
        return {k: conv.unstructure(v) for k, v in value}

    def structure_pairs(value: Any, hint: Any) -> Any:
        value_type = get_args(get_args(hint)[0])[1]
        items = list(value.items()) if isinstance(value, Mapping) else [(k, v) for k, v in value]
        return tuple((str(k), conv.structure(v, value_type)) for k, v in items)

    conv.register_unstructure_hook_func(_is_pairs, unstructure_pairs)
    conv.register_structure_hook_func(_is_pairs, structure_pairs)
    # a sampling setting's value: a number or a string, kept as written
    conv.register_structure_hook(float | int | str, lambda value, _: value)
    # sections added after version 2 are written only when present, so older files rewrite unchanged
    from llmrec.results import VariantResults

    conv.register_unstructure_hook(
        VariantResults,
        make_dict_unstructure_fn(
            VariantResults,
            conv,
            tuning=override(omit_if_default=True),
            paper_table=override(omit_if_default=True),
        ),
    )
    return conv


CONVERTER = make_converter()


def check_schema(data: Mapping[str, Any], known: int, what: str) -> None:
    """
    Refuse a document whose ``schema_version`` is not the one this llmrec writes.

    Raises:
        StoreError: naming the document, its version and the one expected.
    """
    version = data.get("schema_version")
    if version != known:
        msg = (
            f"{what} has schema_version {version!r}; this llmrec reads version {known} "
            "(rerun the experiment, or use the llmrec version that wrote it)"
        )
        raise StoreError(msg)
