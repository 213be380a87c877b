"""
What an experiment will cost before it runs: token counts of its training files and prompts, priced.

Pure: the caller builds the training examples and chat requests (as the run would), picks a price
table and passes both in; nothing here reads files or the clock. Each row is one billed item, with
its tokens and dollars as a range:

- training (per variant): ``low`` and ``expected`` bill the training examples' tokens times epochs
  at the training price; ``worst`` also bills the validation examples, in case they are charged.
- inference (per model): ``low`` bills the prompts alone, ``expected`` adds the expected answer
  length per request, ``worst`` adds each request's ``max_tokens`` (or the model's output limit when
  a request sets none). Every inference row is priced both synchronously and through the Batch API;
  ``mode`` says which one the run uses.

Token counts follow ``llmrec.tokens`` (exact encodings, the cookbook's per-message rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs

from llmrec.providers.base import ChatRequest, FineTuneExample, FineTuneRequest, Usage
from llmrec.providers.pricing import FREE_KINDS, BillingMode, ModelPrice, PriceTable
from llmrec.tokens import count_assistant, count_chat, count_example, lookup_encoding

__all__ = [
    "CostEstimate",
    "Dollars",
    "EstimateItem",
    "EstimateRow",
    "InferenceItem",
    "InferencePlan",
    "TokenRange",
    "TrainingPlan",
    "default_epochs",
    "estimate_cost",
    "expected_output_tokens",
    "render_estimate",
]

InferenceItem = Literal["inference zero-shot", "inference fine-tuned", "inference few-shot"]
EstimateItem = Literal["training", "inference zero-shot", "inference fine-tuned", "inference few-shot"]


@attrs.frozen
class TrainingPlan:
    """
    One fine-tune job to price: a variant's training and validation examples and its epochs.
    """

    variant: str
    base_model: str
    training: tuple[FineTuneExample, ...]
    validation: tuple[FineTuneExample, ...]
    epochs: int

    @classmethod
    def from_request(cls, variant: str, request: FineTuneRequest) -> TrainingPlan:
        """
        The plan for a ``FineTuneRequest`` (its base model, examples and epochs).
        """
        return cls(
            variant=variant,
            base_model=request.base_model,
            training=request.training,
            validation=request.validation,
            epochs=request.hyperparameters.epochs,
        )


@attrs.frozen
class InferencePlan:
    """
    The chat requests one model will answer, priced at ``model`` (for a model not trained yet, an
    id such as ``ft:gpt-4o-mini-2024-07-18`` prices it at the base's fine-tuned rates).
    """

    variant: str
    """The variant the requests belong to ("" when shared by every variant)."""
    item: InferenceItem
    model: str
    requests: tuple[ChatRequest, ...]
    expected_output_tokens: int
    """The completion tokens of a typical answer (see ``expected_output_tokens``)."""
    mode: BillingMode = "sync"
    """How the run sends them: one by one ("sync") or through the Batch API ("batch")."""


@attrs.frozen
class TokenRange:
    """
    Billed tokens (input plus output) at the low, expected and worst ends.
    """

    low: int
    expected: int
    worst: int


@attrs.frozen
class Dollars:
    """
    Dollars at the low, expected and worst ends.
    """

    low: float
    expected: float
    worst: float

    def __add__(self, other: Dollars) -> Dollars:
        return Dollars(self.low + other.low, self.expected + other.expected, self.worst + other.worst)


_ZERO = Dollars(0.0, 0.0, 0.0)


@attrs.frozen
class EstimateRow:
    """
    One billed item: a variant's training, or one model's inference requests.
    """

    variant: str
    item: EstimateItem
    model: str
    count: int
    """Training examples (training rows) or requests (inference rows)."""
    input_tokens: int
    """Training: tokens of one epoch over the training examples; inference: all prompt tokens."""
    tokens: TokenRange
    """Billed tokens: training tokens x epochs, or prompt plus completion tokens."""
    sync: Dollars
    batch: Dollars | None
    """The same requests through the Batch API; None for training (no batch discount)."""
    mode: BillingMode
    epochs: int = 0
    """Training rows only."""
    notes: tuple[str, ...] = ()

    @property
    def dollars(self) -> Dollars:
        """
        The dollars in the mode the run uses.
        """
        return self.batch if self.mode == "batch" and self.batch is not None else self.sync


@attrs.frozen
class CostEstimate:
    """
    Every billed item of a run, the price table's date and source, and totals.
    """

    rows: tuple[EstimateRow, ...]
    prices_as_of: str
    prices_source: str
    currency: str

    @property
    def total(self) -> Dollars:
        """
        All rows in the mode each uses.
        """
        return sum((r.dollars for r in self.rows), _ZERO)

    @property
    def total_sync(self) -> Dollars:
        """
        All rows with every inference request sent synchronously.
        """
        return sum((r.sync for r in self.rows), _ZERO)

    @property
    def total_batch(self) -> Dollars:
        """
        All rows with every inference request sent through the Batch API.
        """
        return sum((r.batch if r.batch is not None else r.sync for r in self.rows), _ZERO)

    @property
    def total_tokens(self) -> TokenRange:
        """
        Billed tokens over all rows.
        """
        return TokenRange(
            sum(r.tokens.low for r in self.rows),
            sum(r.tokens.expected for r in self.rows),
            sum(r.tokens.worst for r in self.rows),
        )


def default_epochs(n_examples: int) -> int:
    """
    The epochs OpenAI picks for ``n_epochs = "auto"``, by the cookbook's reading: 3, raised so the
    job sees at least 100 examples (at most 25 epochs) or lowered so it sees at most 25,000 (at
    least 1).

    Raises:
        ValueError: when ``n_examples`` < 1.
    """
    if n_examples < 1:
        msg = f"n_examples must be >= 1, got {n_examples}"
        raise ValueError(msg)
    if n_examples * 3 < 100:
        return min(25, 100 // n_examples)
    if n_examples * 3 > 25_000:
        return max(1, 25_000 // n_examples)
    return 3


def expected_output_tokens(examples: Sequence[FineTuneExample], model: str) -> int:
    """
    The completion tokens of a typical answer: the mean assistant tokens of ``examples`` (answers
    in the run's own format, such as its training examples), rounded up.

    Raises:
        ValueError: when ``examples`` is empty.
    """
    if not examples:
        msg = "expected_output_tokens needs at least one example answer"
        raise ValueError(msg)
    return math.ceil(sum(count_assistant(e, model) for e in examples) / len(examples))


def estimate_cost(
    training: Sequence[TrainingPlan],
    inference: Sequence[InferencePlan],
    prices: PriceTable,
    *,
    kind: str = "openai",
    max_tokens_per_example: int | None = None,
) -> CostEstimate:
    """
    Price a run's fine-tune jobs and inference requests.

    Args:
        training: one plan per fine-tune job.
        inference: one plan per model (and variant) answering requests.
        prices: the price table.
        kind: the provider kind; ``fake`` and ``local`` cost nothing (tokens are still counted).
        max_tokens_per_example: the training context; longer examples are billed at this length.

    Returns:
        One row per plan, training rows first.

    Raises:
        DataError: when the table has no price for a model.
        ValueError: when a plan has negative epochs or expected output tokens.
    """
    rows = [_training_row(p, prices, kind, max_tokens_per_example) for p in training]
    rows += [_inference_row(p, prices, kind) for p in inference]
    return CostEstimate(
        rows=tuple(rows),
        prices_as_of=prices.as_of.isoformat(),
        prices_source=prices.source,
        currency=prices.currency,
    )


def _training_row(plan: TrainingPlan, prices: PriceTable, kind: str, cap: int | None) -> EstimateRow:
    price = prices.price_for(plan.base_model, kind=kind)
    if plan.epochs < 0:
        msg = f"variant {plan.variant!r}: epochs must be >= 0, got {plan.epochs}"
        raise ValueError(msg)

    def tokens(examples: Sequence[FineTuneExample]) -> int:
        counts = (count_example(e, plan.base_model) for e in examples)
        return sum(counts) if cap is None else sum(min(c, cap) for c in counts)

    train = tokens(plan.training)
    valid = tokens(plan.validation)
    billed = TokenRange(train * plan.epochs, train * plan.epochs, (train + valid) * plan.epochs)
    dollars = Dollars(
        price.training_cost(train, plan.epochs),
        price.training_cost(train, plan.epochs),
        price.training_cost(train + valid, plan.epochs),
    )
    notes = _encoding_notes(plan.base_model)
    if valid:
        notes += (f"worst case also bills the {len(plan.validation):,} validation examples",)
    return EstimateRow(
        variant=plan.variant,
        item="training",
        model=plan.base_model,
        count=len(plan.training),
        input_tokens=train,
        tokens=billed,
        sync=dollars,
        batch=None,
        mode="sync",
        epochs=plan.epochs,
        notes=notes,
    )


def _inference_row(plan: InferencePlan, prices: PriceTable, kind: str) -> EstimateRow:
    price = prices.price_for(plan.model, kind=kind)
    if plan.expected_output_tokens < 0:
        msg = f"{plan.item} {plan.model!r}: expected_output_tokens must be >= 0"
        raise ValueError(msg)
    notes = _encoding_notes(plan.model)
    prompt = sum(count_chat(r.messages, plan.model) for r in plan.requests)
    n = len(plan.requests)
    expected_out = plan.expected_output_tokens * n
    worst_out = sum(_worst_output(r, plan.expected_output_tokens, price) for r in plan.requests)
    if any(r.max_tokens is None for r in plan.requests):
        if price.max_output_tokens is None:
            notes += ("requests without max_tokens: worst case assumes the expected answer length",)
        else:
            notes += (
                f"requests without max_tokens: worst case assumes {price.max_output_tokens:,} output tokens",
            )
    expected_out = min(expected_out, worst_out)

    def dollars(mode: BillingMode) -> Dollars:
        return Dollars(
            _cost(price, prompt, 0, mode),
            _cost(price, prompt, expected_out, mode),
            _cost(price, prompt, worst_out, mode),
        )

    return EstimateRow(
        variant=plan.variant,
        item=plan.item,
        model=plan.model,
        count=n,
        input_tokens=prompt,
        tokens=TokenRange(prompt, prompt + expected_out, prompt + worst_out),
        sync=dollars("sync"),
        batch=dollars("batch"),
        mode=plan.mode,
        notes=notes,
    )


def _worst_output(request: ChatRequest, expected: int, price: ModelPrice) -> int:
    if request.max_tokens is not None:
        return request.max_tokens
    return price.max_output_tokens if price.max_output_tokens is not None else expected


def _cost(price: ModelPrice, prompt: int, completion: int, mode: BillingMode) -> float:
    # Prompts under 1,024 tokens are never served from the prompt cache, and a run cannot know
    # which longer ones will be: the estimate bills every prompt token at the uncached price.
    return price.cost(Usage(prompt_tokens=prompt, completion_tokens=completion), mode)


def _encoding_notes(model: str) -> tuple[str, ...]:
    choice = lookup_encoding(model)
    if choice.known:
        return ()
    return (f"model {model!r} not recognised: tokens counted with {choice.encoding}",)


# -- rendering --------------------------------------------------------------------------------------------


def _money(x: float) -> str:
    if x == 0:
        return "$0"
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def render_estimate(estimate: CostEstimate) -> str:
    """
    The estimate as a plain-text table with totals and notes (what ``llmrec estimate`` prints).
    """
    header = (
        "variant",
        "item",
        "model",
        "n",
        "tokens (exp.)",
        "tokens (worst)",
        "mode",
        "low",
        "expected",
        "worst",
    )
    lines: list[tuple[str, ...]] = [header]
    for r in estimate.rows:
        item = f"training x{r.epochs}" if r.item == "training" else r.item
        d = r.dollars
        lines.append(
            (
                r.variant or "(all)",
                item,
                r.model,
                f"{r.count:,}",
                f"{r.tokens.expected:,}",
                f"{r.tokens.worst:,}",
                r.mode if r.item != "training" else "-",
                _money(d.low),
                _money(d.expected),
                _money(d.worst),
            )
        )
    t, tokens = estimate.total, estimate.total_tokens
    total = (
        "total",
        "",
        "",
        "",
        f"{tokens.expected:,}",
        f"{tokens.worst:,}",
        "",
        *map(_money, (t.low, t.expected, t.worst)),
    )
    widths = [max(len(row[i]) for row in [*lines, total]) for i in range(len(header))]
    right = {3, 4, 5, 7, 8, 9}

    def fmt(row: tuple[str, ...]) -> str:
        cells = (
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [
        f"Cost estimate in {estimate.currency}, prices as of {estimate.prices_as_of}",
        f"Price table: {estimate.prices_source}",
        "",
        fmt(header),
        rule,
        *(fmt(row) for row in lines[1:]),
        rule,
        fmt(total),
        "",
    ]
    sync, batch = estimate.total_sync, estimate.total_batch
    if any(r.batch is not None for r in estimate.rows):
        out.append(
            f"All inference sent synchronously: {_money(sync.expected)} expected; "
            f"through the Batch API: {_money(batch.expected)} expected."
        )
    notes = [(r, n) for r in estimate.rows for n in r.notes]
    if notes:
        out.append("Notes:")
        out += [f"  {r.variant or '(all)'} {r.item}: {n}" for r, n in notes]
    out.append("low: prompts alone, training examples only; expected: answers of the typical length;")
    out.append("worst: every answer at max_tokens, validation examples billed too.")
    return "\n".join(out) + "\n"


def actual_cost(
    usage_by_model: Sequence[tuple[str, Usage]],
    trained_tokens: Sequence[tuple[str, int]],
    prices: PriceTable,
    *,
    kind: str = "openai",
) -> float:
    """
    What a run spent: every model's billed tokens at its price (sync or batch as billed), plus each
    fine-tune's trained tokens (epochs included, as the backend reports them) at the training price.

    Raises:
        DataError: when the table has no price for a model.
    """
    if kind in FREE_KINDS:
        return 0.0
    spent = sum(prices.cost(usage, model, kind=kind) for model, usage in usage_by_model)
    spent += sum(prices.training_cost(tokens, 1, model, kind=kind) for model, tokens in trained_tokens)
    return float(spent)
