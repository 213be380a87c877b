"""
The price table: the shipped figures, lookups by name / alias / fine-tuned id, dollars for usage and
training worked out by hand, batch at half price, and errors that name the model and the file.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from llmrec.errors import DataError
from llmrec.providers.base import Usage
from llmrec.providers.pricing import FREE_KINDS, PriceTable, default_prices, parse_prices

FT = "ft:gpt-4o-mini-2024-07-18:acme:llmrec:AbC123"


@pytest.fixture
def prices() -> PriceTable:
    """
    The table shipped with llmrec.
    """
    return default_prices()


def test_shipped_table_date_source_and_file(prices: PriceTable) -> None:
    """The shipped table is dated 2026-12-01, lives in the package, and every entry gives its source."""
    assert prices.as_of == datetime.date(2026, 12, 1)
    assert Path(prices.source).name == "prices.toml"
    assert Path(prices.source).is_file()
    assert prices.currency == "USD"
    assert prices.batch_multiplier == 0.5
    for entry in prices.entries:
        assert "as listed at the time of writing" in entry.base.source
        assert entry.fine_tuned is not None
        assert "as listed at the time of writing" in entry.fine_tuned.source


def test_gpt_4o_mini_prices_by_name_and_alias(prices: PriceTable) -> None:
    """gpt-4o-mini (alias and dated name): $0.15 / $0.075 cached / $0.60 per 1M, training $3.00."""
    for name in ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"):
        price = prices.price_for(name)

        assert price.model == name
        assert (price.input, price.cached_input, price.output) == (0.15, 0.075, 0.60)
        assert price.training == 3.00
        assert price.max_output_tokens == 16384
        assert not price.fine_tuned


def test_fine_tuned_id_gets_the_base_models_fine_tuned_prices(prices: PriceTable) -> None:
    """A fine-tuned gpt-4o-mini costs $0.30 / $1.20 per 1M; training it further costs the base's $3.00."""
    price = prices.price_for(FT)

    assert price.model == FT
    assert (price.input, price.cached_input, price.output) == (0.30, 0.15, 1.20)
    assert price.training == 3.00
    assert price.fine_tuned
    assert prices.price_for(FT + ":ckpt-step-40").output == 1.20


def test_gpt_41_mini_prices(prices: PriceTable) -> None:
    """gpt-4.1-mini: $0.40 / $0.10 / $1.60, training $5.00; fine-tuned $0.80 / $0.20 / $3.20."""
    base = prices.price_for("gpt-4.1-mini")
    tuned = prices.price_for("ft:gpt-4.1-mini-2025-04-14:acme::x1")

    assert (base.input, base.cached_input, base.output, base.training) == (0.40, 0.10, 1.60, 5.00)
    assert (tuned.input, tuned.cached_input, tuned.output) == (0.80, 0.20, 3.20)


def test_cost_of_usage_by_hand(prices: PriceTable) -> None:
    """
    2,000 prompt tokens (1,000 cached) and 500 completion tokens on gpt-4o-mini:
    (1,000 x 0.15 + 1,000 x 0.075 + 500 x 0.60) / 1M = $0.000525; fine-tuned
    (1,000 x 0.30 + 1,000 x 0.15 + 500 x 1.20) / 1M = $0.00105.
    """
    usage = Usage(prompt_tokens=2000, completion_tokens=500, cached_tokens=1000)

    assert prices.cost(usage, "gpt-4o-mini") == pytest.approx(0.000525)
    assert prices.cost(usage, FT) == pytest.approx(0.00105)
    assert prices.cost(Usage(1_000_000, 1_000_000), "gpt-4o-mini") == pytest.approx(0.75)


def test_batch_is_half_price(prices: PriceTable) -> None:
    """Through the Batch API usage costs half, whether the mode is passed or recorded on the usage."""
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)

    assert prices.cost(usage, "gpt-4o-mini", "batch") == pytest.approx(0.375)
    assert prices.cost(Usage(1_000_000, 1_000_000, mode="batch"), "gpt-4o-mini") == pytest.approx(0.375)
    assert prices.cost(Usage(1_000_000, 1_000_000, mode="batch"), "gpt-4o-mini", "sync") == pytest.approx(
        0.75
    )
    assert prices.cost(usage, FT, "batch") == pytest.approx((0.30 + 1.20) / 2)


def test_training_cost_and_the_papers_figure(prices: PriceTable) -> None:
    """
    1M tokens x 2 epochs at $3.00 is $6.00. The paper's ~$16 for two models at $3 per 1M tokens per
    epoch and 2 epochs is 2.67M tokens a model: about 6,000 examples of ~222 tokens ($15.98).
    """
    assert prices.training_cost(1_000_000, 2, "gpt-4o-mini") == pytest.approx(6.0)
    assert prices.training_cost(1_000_000, 2, "gpt-4.1-mini") == pytest.approx(10.0)
    assert 2 * prices.training_cost(6000 * 222, 2, "gpt-4o-mini-2024-07-18") == pytest.approx(15.984)


def test_unknown_model_error_names_model_and_table(prices: PriceTable) -> None:
    """A model the table lacks is a DataError naming the model, the models it has and the file."""
    with pytest.raises(DataError) as info:
        prices.price_for("gpt-4o")

    assert info.value.path == prices.source
    message = str(info.value)
    assert message.startswith(prices.source)
    assert "'gpt-4o'" in message
    assert "gpt-4o-mini-2024-07-18" in message


def test_fine_tuned_id_of_unknown_base_names_the_base(prices: PriceTable) -> None:
    """A fine-tuned id whose base the table lacks names that base."""
    with pytest.raises(
        DataError, match=r"base model 'gpt-3\.5-turbo-0125' of 'ft:gpt-3\.5-turbo-0125:acme::x'"
    ):
        prices.price_for("ft:gpt-3.5-turbo-0125:acme::x")


@pytest.mark.parametrize("kind", sorted(FREE_KINDS))
def test_fake_and_local_kinds_cost_nothing(prices: PriceTable, kind: str) -> None:
    """Models of the fake and local kinds cost $0 for inference and training, whatever their name."""
    assert prices.cost(Usage(10_000, 10_000), "fake-llm", kind=kind) == 0.0
    assert prices.training_cost(10_000, 3, "Qwen/Qwen2.5-7B-Instruct", kind=kind) == 0.0
    with pytest.raises(DataError, match="'fake-llm'"):
        prices.cost(Usage(1, 1), "fake-llm")


def test_cost_rejects_impossible_usage(prices: PriceTable) -> None:
    """More cached than prompt tokens, or negative counts, are ValueErrors."""
    with pytest.raises(ValueError, match="more cached tokens"):
        prices.cost(Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=11), "gpt-4o-mini")
    with pytest.raises(ValueError, match="negative"):
        prices.cost(Usage(prompt_tokens=-1, completion_tokens=0), "gpt-4o-mini")


_MINIMAL = """
as_of = 2026-12-01
currency = "USD"
batch_multiplier = 0.5
batch_source = "test"

[models.m1]
input = 1
cached_input = 0.5
output = 2
source = "test"
"""


def test_parse_minimal_table_without_training_or_fine_tuned_prices() -> None:
    """A model with inference prices only: training it or pricing its fine-tunes is an error."""
    table = parse_prices(_MINIMAL, source="mine.toml")

    assert table.cost(Usage(1_000_000, 0), "m1") == 1.0
    with pytest.raises(ValueError, match="no fine-tuning price for 'm1'"):
        table.training_cost(1000, 1, "m1")
    with pytest.raises(DataError, match=r"mine\.toml: no fine-tuned prices for 'ft:m1:x'"):
        table.price_for("ft:m1:x")


def test_parse_lists_every_problem() -> None:
    """A malformed table names the file and every bad field: date, range, price, unknown key, alias."""
    text = """
as_of = "December"
currency = "USD"
batch_multiplier = 2
batch_source = "test"

[models.m1]
aliases = ["m2"]
input = -1
cached_input = 0.5
output = 2
source = "test"
inptu = 3

[models.m2]
input = 1
cached_input = 0.5
output = 2
source = "test"
"""
    with pytest.raises(DataError) as info:
        parse_prices(text, source="bad.toml")

    message = str(info.value)
    assert message.startswith("bad.toml: price table has 5 problems")
    assert "as_of: expected a date such as 2026-12-01, got 'December'" in message
    assert "batch_multiplier: expected a number in [0, 1.0], got 2" in message
    assert "models.m1.input: expected a number >= 0 (dollars per 1M tokens), got -1" in message
    assert "models.m1.inptu: unknown key" in message
    assert "models.m2: name 'm2' is also used by 'm1'" in message


def test_parse_rejects_text_that_is_not_toml() -> None:
    """Text that is not TOML is a DataError naming the file."""
    with pytest.raises(DataError, match=r"^x\.toml: not a valid TOML price table"):
        parse_prices("as_of = = 3", source="x.toml")
