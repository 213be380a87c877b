"""
Simulated supervised fine-tuning whose losses are computed from the uploaded examples.

The "model" is a smoothed unigram distribution over the assistant tokens (lower-cased
``formats.token_pieces``). Training walks the examples epoch by epoch, in an order shuffled by
``Random(seed + epoch)``, ``batch_size`` examples per step. At each step:

- ``train_loss``: the mean negative log-likelihood (nats per token) of the batch's assistant tokens
  under the model *before* the step's update, with ``p(t) = (lr * count(t) + 1) / (lr * total + V)``,
  where ``lr`` is the learning-rate multiplier and ``V`` the vocabulary size of the training and
  validation answers plus one;
- ``train_accuracy``: the share of those tokens the model rates above a uniform guess over the tokens
  it has seen so far (``p(t) > 1 / (seen + 1)``);
- ``valid_loss`` / ``valid_mean_token_accuracy``: the same two numbers over all validation answer
  tokens, after the update (empty without a validation file);
- then the batch's tokens are added to the counts.

Loss starts at ``log V`` and falls as counts accumulate, faster with a larger multiplier; it cannot
fall below the answers' unigram entropy, so later epochs flatten out as real runs do.

``auto`` hyperparameters: ``n_epochs`` as OpenAI's cookbook computes it (3; ``min(25, 100 // n)`` when
fewer than 100 examples would be seen; ``max(1, 25000 // n)`` when more than 25,000 would);
``batch_size`` about 0.2% of the examples (1..256); the learning-rate multiplier 1.8.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .formats import token_pieces

__all__ = [
    "Hyperparameters",
    "StepMetrics",
    "resolve_hyperparameters",
    "simulate_training",
    "step_metrics_csv",
]


@dataclass(frozen=True)
class Hyperparameters:
    """
    Resolved supervised hyperparameters.
    """

    batch_size: int
    n_epochs: int
    learning_rate_multiplier: float


@dataclass(frozen=True)
class StepMetrics:
    """
    One training step's numbers (valid_* are None without a validation file).
    """

    step: int
    train_loss: float
    train_accuracy: float
    valid_loss: float | None
    valid_accuracy: float | None


def resolve_hyperparameters(requested: dict[str, Any], n_examples: int) -> Hyperparameters:
    """
    Fill in ``auto`` (or missing) values for a training set of ``n_examples``.
    """
    epochs = requested.get("n_epochs", "auto")
    if epochs == "auto" or epochs is None:
        epochs = 3
        if n_examples * epochs < 100:
            epochs = min(25, 100 // max(n_examples, 1))
        elif n_examples * epochs > 25_000:
            epochs = max(1, 25_000 // n_examples)
    batch = requested.get("batch_size", "auto")
    if batch == "auto" or batch is None:
        batch = max(1, min(256, round(n_examples * 0.002)))
    lr = requested.get("learning_rate_multiplier", "auto")
    if lr == "auto" or lr is None:
        lr = 1.8
    return Hyperparameters(batch_size=int(batch), n_epochs=int(epochs), learning_rate_multiplier=float(lr))


def _answer_tokens(example: dict[str, Any]) -> list[str]:
    tokens: list[str] = []
    for message in example.get("messages", []):
        if message.get("role") == "assistant" and message.get("weight", 1) != 0:
            tokens.extend(t.lower() for t in token_pieces(str(message.get("content", ""))))
    return tokens


class _Unigram:
    def __init__(self, vocab: int, lr: float) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.vocab = vocab
        self.lr = lr

    def score(self, tokens: Counter[str]) -> tuple[float, float]:
        n = sum(tokens.values())
        if n == 0:
            return 0.0, 0.0
        denominator = self.lr * self.total + self.vocab
        threshold = 1.0 / (len(self.counts) + 1)
        nll = 0.0
        hits = 0
        for token, k in tokens.items():
            p = (self.lr * self.counts[token] + 1.0) / denominator
            nll -= k * math.log(p)
            hits += k if p > threshold else 0
        return nll / n, hits / n

    def learn(self, tokens: Counter[str]) -> None:
        self.counts.update(tokens)
        self.total += sum(tokens.values())


def simulate_training(
    train: Sequence[dict[str, Any]], valid: Sequence[dict[str, Any]], hp: Hyperparameters, seed: int
) -> list[StepMetrics]:
    """
    Run the simulated training and return one ``StepMetrics`` per step.
    """
    train_tokens = [Counter(_answer_tokens(e)) for e in train]
    valid_tokens: Counter[str] = Counter()
    for e in valid:
        valid_tokens.update(_answer_tokens(e))
    vocabulary: set[str] = set(valid_tokens)
    for c in train_tokens:
        vocabulary.update(c)
    model = _Unigram(len(vocabulary) + 1, hp.learning_rate_multiplier)
    steps: list[StepMetrics] = []
    for epoch in range(hp.n_epochs):
        order = list(range(len(train)))
        random.Random(seed + epoch).shuffle(order)
        for start in range(0, len(order), hp.batch_size):
            batch: Counter[str] = Counter()
            for i in order[start : start + hp.batch_size]:
                batch.update(train_tokens[i])
            loss, accuracy = model.score(batch)
            model.learn(batch)
            v_loss, v_acc = model.score(valid_tokens) if valid else (None, None)
            steps.append(StepMetrics(len(steps) + 1, loss, accuracy, v_loss, v_acc))
    return steps


def step_metrics_csv(steps: Sequence[StepMetrics]) -> str:
    """
    The result file's text: OpenAI's columns, one row per step, empty cells without validation data.
    """

    def cell(x: float | None) -> str:
        return "" if x is None else f"{x:.5f}"

    rows = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
    rows.extend(
        f"{s.step},{cell(s.train_loss)},{cell(s.train_accuracy)},{cell(s.valid_loss)},{cell(s.valid_accuracy)}"
        for s in steps
    )
    return "\n".join(rows) + "\n"
