"""
The cost estimate: rows and totals worked out by hand from one-token messages, batch at half price,
worst cases from max_tokens or the model's output limit, free kinds, and the rendered table.
"""

from __future__ import annotations

import pytest

from llmrec.errors import DataError
from llmrec.estimate import (
    CostEstimate,
    InferencePlan,
    TrainingPlan,
    default_epochs,
    estimate_cost,
    expected_output_tokens,
    render_estimate,
)
from llmrec.providers.base import ChatMessage, ChatRequest, FineTuneExample, FineTuneRequest, Hyperparameters
from llmrec.providers.pricing import default_prices
from llmrec.tokens import count_text

BASE = "gpt-4o-mini-2024-07-18"
FT = "ft:gpt-4o-mini-2024-07-18"

# Every role and "a" are one o200k token, so a message costs 3 + 1 + 1 = 5 and a chat 3 more:
# an example (system, user, assistant) is 18 tokens, a prompt (system, user) 13.
EXAMPLE = FineTuneExample(
    messages=(
        ChatMessage("system", "a"),
        ChatMessage("user", "a"),
        ChatMessage("assistant", "a"),
    )
)
PROMPT = (ChatMessage("system", "a"), ChatMessage("user", "a"))


def _requests(n: int, model: str, max_tokens: int | None = 50) -> tuple[ChatRequest, ...]:
    return tuple(
        ChatRequest(key=str(i), model=model, messages=PROMPT, max_tokens=max_tokens) for i in range(n)
    )


def _estimate() -> CostEstimate:
    training = [TrainingPlan("v1", BASE, (EXAMPLE,) * 1000, (EXAMPLE,) * 200, epochs=2)]
    inference = [
        InferencePlan("", "inference zero-shot", BASE, _requests(100, BASE), expected_output_tokens=10),
        InferencePlan(
            "v1", "inference fine-tuned", FT, _requests(100, FT), expected_output_tokens=10, mode="batch"
        ),
    ]
    return estimate_cost(training, inference, default_prices())


def test_one_token_pieces() -> None:
    """The hand computations below rest on these one-token pieces."""
    for piece in ("system", "user", "assistant", "a"):
        assert count_text(piece, "o200k_base") == 1


def test_training_row_by_hand() -> None:
    """
    1,000 examples x 18 tokens x 2 epochs = 36,000 tokens at $3.00 / 1M = $0.108; the worst case adds
    200 validation examples: 21,600 x 2 = 43,200 tokens, $0.1296.
    """
    row = _estimate().rows[0]

    assert (row.variant, row.item, row.model, row.count, row.epochs) == ("v1", "training", BASE, 1000, 2)
    assert row.input_tokens == 18_000
    assert (row.tokens.low, row.tokens.expected, row.tokens.worst) == (36_000, 36_000, 43_200)
    assert row.batch is None
    assert (row.dollars.low, row.dollars.expected, row.dollars.worst) == pytest.approx((0.108, 0.108, 0.1296))


def test_zero_shot_row_by_hand() -> None:
    """
    100 prompts x 13 tokens = 1,300 input tokens; 10 expected and 50 worst output tokens each.
    Sync: 1,300 x 0.15 / 1M = $0.000195 low, + 1,000 x 0.60 / 1M = $0.000795 expected,
    + 5,000 x 0.60 / 1M = $0.003195 worst; batch halves each.
    """
    row = _estimate().rows[1]

    assert (row.item, row.model, row.count, row.mode) == ("inference zero-shot", BASE, 100, "sync")
    assert row.input_tokens == 1300
    assert (row.tokens.low, row.tokens.expected, row.tokens.worst) == (1300, 2300, 6300)
    assert (row.sync.low, row.sync.expected, row.sync.worst) == pytest.approx((0.000195, 0.000795, 0.003195))
    assert row.batch is not None
    assert (row.batch.low, row.batch.expected, row.batch.worst) == pytest.approx(
        (0.0000975, 0.0003975, 0.0015975)
    )
    assert row.dollars == row.sync


def test_fine_tuned_row_by_hand_in_batch() -> None:
    """
    The same requests on the fine-tuned model: sync $0.00039 / $0.00159 / $0.00639 at $0.30 / $1.20;
    the row runs through the Batch API, so it costs half: $0.000195 / $0.000795 / $0.003195.
    """
    row = _estimate().rows[2]

    assert (row.variant, row.item, row.mode) == ("v1", "inference fine-tuned", "batch")
    assert (row.sync.low, row.sync.expected, row.sync.worst) == pytest.approx((0.00039, 0.00159, 0.00639))
    assert (row.dollars.low, row.dollars.expected, row.dollars.worst) == pytest.approx(
        (0.000195, 0.000795, 0.003195)
    )


def test_totals_by_hand() -> None:
    """Totals add the rows in their own modes ($0.10959 expected), all sync, or all through the Batch API."""
    estimate = _estimate()

    assert estimate.total.expected == pytest.approx(0.108 + 0.000795 + 0.000795)
    assert estimate.total_sync.expected == pytest.approx(0.108 + 0.000795 + 0.00159)
    assert estimate.total_batch.expected == pytest.approx(0.108 + 0.0003975 + 0.000795)
    assert estimate.total.worst == pytest.approx(0.1296 + 0.003195 + 0.003195)
    assert estimate.total_tokens.expected == 36_000 + 2300 + 2300
    assert estimate.prices_as_of == "2026-12-01"


def test_request_without_max_tokens_uses_the_models_output_limit() -> None:
    """With no max_tokens, the worst case is the model's 16,384 output tokens per request, with a note."""
    plan = InferencePlan("", "inference zero-shot", BASE, _requests(2, BASE, max_tokens=None), 10)

    row = estimate_cost([], [plan], default_prices()).rows[0]

    assert row.tokens.worst == 26 + 2 * 16384
    assert row.sync.worst == pytest.approx((26 * 0.15 + 2 * 16384 * 0.60) / 1e6)
    assert any("16,384" in note for note in row.notes)


def test_expected_output_never_exceeds_worst() -> None:
    """An expected answer longer than max_tokens is cut to max_tokens."""
    plan = InferencePlan("", "inference zero-shot", BASE, _requests(3, BASE, max_tokens=5), 10)

    row = estimate_cost([], [plan], default_prices()).rows[0]

    assert row.tokens.expected == row.tokens.worst == 39 + 15


def test_fake_kind_counts_tokens_at_no_cost_and_flags_the_encoding() -> None:
    """The fake kind costs $0 but its tokens are counted, with a note that the model was not recognised."""
    training = [TrainingPlan("v1", "fake-llm", (EXAMPLE,) * 10, (), epochs=3)]

    row = estimate_cost(training, [], default_prices(), kind="fake").rows[0]

    assert row.tokens.expected == 10 * 18 * 3
    assert row.dollars.worst == 0.0
    assert row.notes == ("model 'fake-llm' not recognised: tokens counted with o200k_base",)


def test_unknown_model_on_openai_is_an_error() -> None:
    """Pricing a model the table lacks fails with the table's DataError."""
    with pytest.raises(DataError, match="'gpt-4o'"):
        estimate_cost([TrainingPlan("v1", "gpt-4o", (EXAMPLE,), (), 1)], [], default_prices())


def test_cap_bills_long_examples_at_the_training_context() -> None:
    """max_tokens_per_example bills an 18-token example as 10."""
    training = [TrainingPlan("v1", BASE, (EXAMPLE,) * 4, (), epochs=1)]

    row = estimate_cost(training, [], default_prices(), max_tokens_per_example=10).rows[0]

    assert row.tokens.expected == 40


def test_plan_from_fine_tune_request() -> None:
    """A FineTuneRequest gives its base model, examples and epochs."""
    request = FineTuneRequest(
        base_model=BASE,
        training=(EXAMPLE,) * 3,
        validation=(EXAMPLE,),
        hyperparameters=Hyperparameters(batch_size=32, epochs=2, learning_rate_multiplier=1.0),
    )

    plan = TrainingPlan.from_request("v1", request)

    assert plan == TrainingPlan("v1", BASE, (EXAMPLE,) * 3, (EXAMPLE,), 2)


def test_expected_output_tokens_is_the_rounded_up_mean_answer() -> None:
    """Answers of 1 and 2 tokens expect 2 (the mean 1.5 rounded up); no answers is an error."""
    two = FineTuneExample(messages=(ChatMessage("user", "a"), ChatMessage("assistant", "Hello world")))

    assert expected_output_tokens([EXAMPLE, two], BASE) == 2
    with pytest.raises(ValueError, match="at least one"):
        expected_output_tokens([], BASE)


@pytest.mark.parametrize(
    ("n", "epochs"), [(1, 25), (5, 20), (33, 3), (100, 3), (8333, 3), (10_000, 2), (40_000, 1)]
)
def test_default_epochs_follows_the_cookbook(n: int, epochs: int) -> None:
    """3 epochs, raised towards 100 example passes (at most 25), lowered towards 25,000 (at least 1)."""
    assert default_epochs(n) == epochs


def test_default_epochs_rejects_no_examples() -> None:
    """No examples is a ValueError."""
    with pytest.raises(ValueError, match=">= 1"):
        default_epochs(0)


def test_render_estimate_table() -> None:
    """The table shows the date, one line per row, the totals, the sync / batch comparison and notes."""
    text = render_estimate(_estimate())
    lines = text.splitlines()

    assert lines[0] == "Cost estimate in USD, prices as of 2026-12-01"
    assert lines[1].startswith("Price table: ")
    assert lines[1].endswith("prices.toml")
    header = next(i for i, line in enumerate(lines) if line.startswith("variant"))
    training, zero_shot, fine_tuned = lines[header + 2 : header + 5]
    money = ["$0.1080", "$0.1080", "$0.1296"]
    assert training.split() == ["v1", "training", "x2", BASE, "1,000", "36,000", "43,200", "-", *money]
    assert zero_shot.split()[:4] == ["(all)", "inference", "zero-shot", BASE]
    assert zero_shot.split()[-4:] == ["sync", "$0.0002", "$0.0008", "$0.0032"]
    assert fine_tuned.split()[-4:] == ["batch", "$0.0002", "$0.0008", "$0.0032"]
    total = lines[header + 6]
    assert total.split() == ["total", "40,600", "55,800", "$0.1084", "$0.1096", "$0.1360"]
    assert (
        "All inference sent synchronously: $0.1104 expected; through the Batch API: $0.1092 expected." in text
    )
    assert "  v1 training: worst case also bills the 200 validation examples" in text
