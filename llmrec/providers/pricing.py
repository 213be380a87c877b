"""
What tokens cost: a price table kept as data (``prices.toml`` beside this module), read with tomllib.

``PriceTable.price_for(model)`` finds a model's ``ModelPrice`` by name or alias; a fine-tuned id
(``ft:gpt-4o-mini-2024-07-18:org:suffix:id``) gets its base model's fine-tuned prices. The ``fake``
and ``local`` provider kinds cost nothing. A model the table does not list is an error naming the
model and the table's file, never a silent zero.

Prices are US dollars per 1M tokens. ``cost`` bills a ``Usage``: uncached prompt tokens at the input
price, cached ones at the cached-input price, completion tokens (reasoning included) at the output
price, all times the batch multiplier (one half) for requests sent through the Batch API.
``training_cost`` bills training tokens times epochs at the training price.
"""

from __future__ import annotations

import datetime
import functools
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Final, Literal

import attrs

from llmrec.errors import DataError
from llmrec.providers.base import Usage

__all__ = [
    "FREE_KINDS",
    "PRICES_RESOURCE",
    "BillingMode",
    "ModelPrice",
    "PriceEntry",
    "PriceTable",
    "default_prices",
    "parse_prices",
]

BillingMode = Literal["sync", "batch"]

FREE_KINDS: Final = frozenset({"fake", "local"})
"""Provider kinds whose models cost nothing (the offline fake, a model served on your own machine)."""

PRICES_RESOURCE: Final = "prices.toml"
"""The table shipped with llmrec, a file in the ``llmrec.providers`` package."""

_PER_TOKENS = 1_000_000


@attrs.frozen
class ModelPrice:
    """
    The prices of one model, in dollars per 1M tokens.
    """

    model: str
    """The name the price was asked for."""
    input: float
    cached_input: float
    output: float
    training: float | None = None
    """Per 1M training tokens (tokens x epochs); None: the table has no fine-tuning price for it."""
    max_output_tokens: int | None = None
    """The most completion tokens one answer may have, where known."""
    batch_multiplier: float = 0.5
    """What Batch API requests pay relative to synchronous ones."""
    fine_tuned: bool = False
    source: str = ""
    """Where the figures come from, and their date."""

    def cost(self, usage: Usage, mode: BillingMode | None = None) -> float:
        """
        The dollars a request's usage costs.

        Args:
            usage: the billed tokens.
            mode: "sync" or "batch"; None: the mode recorded on ``usage``.

        Raises:
            ValueError: when ``usage`` has negative counts or more cached than prompt tokens.
        """
        if min(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) < 0:
            msg = f"usage has a negative token count: {usage}"
            raise ValueError(msg)
        if usage.cached_tokens > usage.prompt_tokens:
            msg = (
                f"usage has more cached tokens ({usage.cached_tokens}) "
                f"than prompt tokens ({usage.prompt_tokens})"
            )
            raise ValueError(msg)
        uncached = usage.prompt_tokens - usage.cached_tokens
        dollars = (
            uncached * self.input
            + usage.cached_tokens * self.cached_input
            + usage.completion_tokens * self.output
        ) / _PER_TOKENS
        billed = usage.mode if mode is None else mode
        return dollars * self.batch_multiplier if billed == "batch" else dollars

    def training_cost(self, tokens: int, epochs: int) -> float:
        """
        The dollars a fine-tune job costs for ``tokens`` training tokens per epoch.

        Raises:
            ValueError: when the model has no training price, or tokens / epochs are negative.
        """
        if self.training is None:
            msg = f"the price table has no fine-tuning price for {self.model!r}"
            raise ValueError(msg)
        if tokens < 0 or epochs < 0:
            msg = f"training tokens and epochs must be >= 0, got {tokens} and {epochs}"
            raise ValueError(msg)
        return tokens * epochs * self.training / _PER_TOKENS


@attrs.frozen
class PriceEntry:
    name: str
    aliases: tuple[str, ...]
    base: ModelPrice
    fine_tuned: ModelPrice | None


@attrs.frozen
class PriceTable:
    """
    A price table: its date, where it was read from (``source``, named in every error) and one
    entry per base model.
    """

    as_of: datetime.date
    source: str
    currency: str
    batch_multiplier: float
    batch_source: str
    entries: tuple[PriceEntry, ...]

    @property
    def models(self) -> tuple[str, ...]:
        """
        Every model name and alias the table prices, in table order.
        """
        return tuple(name for e in self.entries for name in (e.name, *e.aliases))

    def price_for(self, model: str, *, kind: str = "openai") -> ModelPrice:
        """
        The prices of ``model``; ``ft:<base>:...`` ids get the base model's fine-tuned prices.

        Args:
            model: a model name or alias from the table, or a fine-tuned id.
            kind: the provider kind; ``fake`` and ``local`` models cost nothing.

        Raises:
            DataError: when the table does not list the model (or has no fine-tuned prices for the
                base of a fine-tuned id); the error names the model and the table's file.
        """
        if kind in FREE_KINDS:
            return ModelPrice(
                model=model,
                input=0.0,
                cached_input=0.0,
                output=0.0,
                training=0.0,
                batch_multiplier=self.batch_multiplier,
                source=f"provider kind {kind!r}: no charge",
            )
        fine_tuned = model.startswith("ft:")
        base = model[3:].split(":", 1)[0] if fine_tuned else model
        entry = next((e for e in self.entries if base == e.name or base in e.aliases), None)
        if entry is None:
            what = f"base model {base!r} of {model!r}" if fine_tuned else f"model {model!r}"
            msg = (
                f"no price for {what}; the table prices {', '.join(self.models)} "
                f"(add the model under [models] in this file, or use a table that has it)"
            )
            raise DataError(msg, path=self.source)
        if not fine_tuned:
            return attrs.evolve(entry.base, model=model)
        if entry.fine_tuned is None:
            msg = f"no fine-tuned prices for {model!r}: [models.{_key(entry.name)}.fine_tuned] is missing"
            raise DataError(msg, path=self.source)
        return attrs.evolve(entry.fine_tuned, model=model)

    def cost(
        self, usage: Usage, model: str, mode: BillingMode | None = None, *, kind: str = "openai"
    ) -> float:
        """
        The dollars ``usage`` costs on ``model`` (see ``ModelPrice.cost``).

        Raises:
            DataError: when the table does not list the model.
        """
        return self.price_for(model, kind=kind).cost(usage, mode)

    def training_cost(self, tokens: int, epochs: int, model: str, *, kind: str = "openai") -> float:
        """
        The dollars fine-tuning ``model`` costs for ``tokens`` training tokens per epoch.

        Raises:
            DataError: when the table does not list the model.
            ValueError: when it lists the model without a training price.
        """
        return self.price_for(model, kind=kind).training_cost(tokens, epochs)


def parse_prices(text: str, *, source: str) -> PriceTable:
    """
    A price table from TOML text (the layout of ``prices.toml``).

    Args:
        text: the TOML text.
        source: where the text came from, named in errors and in ``PriceTable.source``.

    Raises:
        DataError: when the text is not TOML or a field is missing, unknown or of the wrong type;
            every problem is listed.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"not a valid TOML price table: {exc}"
        raise DataError(msg, path=source) from None
    problems: list[str] = []
    reader = _Reader(problems)
    as_of = reader.date(raw, "as_of")
    currency = reader.text(raw, "currency")
    multiplier = reader.number(raw, "batch_multiplier", upper=1.0)
    batch_source = reader.text(raw, "batch_source")
    reader.no_extra(raw, "", {"as_of", "currency", "batch_multiplier", "batch_source", "models"})
    models = raw.get("models")
    entries: list[PriceEntry] = []
    if not isinstance(models, Mapping) or not models:
        problems.append("models: expected a table with at least one model")
    else:
        for name, body in models.items():
            entry = reader.entry(name, body, multiplier)
            if entry is not None:
                entries.append(entry)
        seen: dict[str, str] = {}
        for e in entries:
            for alias in (e.name, *e.aliases):
                if alias in seen:
                    problems.append(f"models.{_key(e.name)}: name {alias!r} is also used by {seen[alias]!r}")
                seen[alias] = e.name
    if problems:
        n = len(problems)
        head = f"price table has {n} problem{'s' if n != 1 else ''}"
        raise DataError("\n  ".join([head, *problems]), path=source)
    assert as_of is not None  # no problems: the reader found every required field
    return PriceTable(
        as_of=as_of,
        source=source,
        currency=currency,
        batch_multiplier=multiplier,
        batch_source=batch_source,
        entries=tuple(entries),
    )


@functools.cache
def default_prices() -> PriceTable:
    """
    The price table shipped with llmrec (``llmrec/providers/prices.toml``), read once.

    Raises:
        DataError: when the file is malformed (a broken install).
    """
    resource = resources.files("llmrec.providers") / PRICES_RESOURCE
    return parse_prices(resource.read_text(encoding="utf-8"), source=str(resource))


# -- reading the TOML -------------------------------------------------------------------------------------

_MODEL_KEYS = frozenset(
    {"aliases", "input", "cached_input", "output", "training", "max_output_tokens", "source", "fine_tuned"}
)
_FINE_TUNED_KEYS = frozenset({"input", "cached_input", "output", "source"})


def _key(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else f'"{name}"'


@attrs.define
class _Reader:
    """
    Reads fields from parsed TOML, noting each problem instead of stopping at the first.
    """

    problems: list[str]

    def _where(self, prefix: str, key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    def no_extra(self, table: Mapping[str, object], prefix: str, allowed: frozenset[str] | set[str]) -> None:
        for key in table:
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                self.problems.append(f"{self._where(prefix, key)}: unknown key (expected one of {expected})")

    def date(self, table: Mapping[str, object], key: str) -> datetime.date | None:
        value = table.get(key)
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return value
        self.problems.append(f"{key}: expected a date such as 2026-12-01, got {value!r}")
        return None

    def text(self, table: Mapping[str, object], key: str, prefix: str = "") -> str:
        value = table.get(key)
        if isinstance(value, str) and value.strip():
            return value
        self.problems.append(f"{self._where(prefix, key)}: expected a non-empty string, got {value!r}")
        return ""

    def number(
        self, table: Mapping[str, object], key: str, prefix: str = "", *, upper: float | None = None
    ) -> float:
        value = table.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if number >= 0 and (upper is None or number <= upper):
                return number
        bound = f"a number in [0, {upper}]" if upper is not None else "a number >= 0 (dollars per 1M tokens)"
        self.problems.append(f"{self._where(prefix, key)}: expected {bound}, got {value!r}")
        return 0.0

    def prices(self, table: Mapping[str, object], prefix: str) -> tuple[float, float, float, str]:
        return (
            self.number(table, "input", prefix),
            self.number(table, "cached_input", prefix),
            self.number(table, "output", prefix),
            self.text(table, "source", prefix),
        )

    def entry(self, name: str, body: object, multiplier: float) -> PriceEntry | None:
        prefix = f"models.{_key(name)}"
        if not isinstance(body, Mapping):
            self.problems.append(f"{prefix}: expected a table of prices, got {body!r}")
            return None
        self.no_extra(body, prefix, _MODEL_KEYS)
        input_, cached, output, source = self.prices(body, prefix)
        training = self.number(body, "training", prefix) if "training" in body else None
        max_output = body.get("max_output_tokens")
        if max_output is not None and (
            not isinstance(max_output, int) or isinstance(max_output, bool) or max_output < 1
        ):
            self.problems.append(f"{prefix}.max_output_tokens: expected an integer > 0, got {max_output!r}")
            max_output = None
        aliases = body.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            self.problems.append(f"{prefix}.aliases: expected a list of model names, got {aliases!r}")
            aliases = []
        base = ModelPrice(
            model=name,
            input=input_,
            cached_input=cached,
            output=output,
            training=training,
            max_output_tokens=max_output if isinstance(max_output, int) else None,
            batch_multiplier=multiplier,
            source=source,
        )
        fine_tuned = None
        ft = body.get("fine_tuned")
        if ft is not None:
            if not isinstance(ft, Mapping):
                self.problems.append(f"{prefix}.fine_tuned: expected a table of prices, got {ft!r}")
            else:
                self.no_extra(ft, f"{prefix}.fine_tuned", _FINE_TUNED_KEYS)
                ft_input, ft_cached, ft_output, ft_source = self.prices(ft, f"{prefix}.fine_tuned")
                fine_tuned = attrs.evolve(
                    base,
                    input=ft_input,
                    cached_input=ft_cached,
                    output=ft_output,
                    fine_tuned=True,
                    source=ft_source,
                )
        return PriceEntry(name=name, aliases=tuple(aliases), base=base, fine_tuned=fine_tuned)
