"""
Scored results: what ``results.json`` holds and what the report renders.

Everything here is metrics and counts only, deterministic for a given spec and data (no timestamps:
those go to ``manifest.json``). ``SCHEMA_VERSION`` grows when a section is added; readers ignore keys
they do not know, so later sections (funnel, cost, baselines, intervals) do not break them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["SCHEMA_VERSION", "ModelRole", "ModelScores", "Results", "VariantResults", "metric_label"]

SCHEMA_VERSION = 1

ModelRole = Literal["baseline", "finetuned"]


def metric_label(name: str) -> str:
    """
    The display label of a metric name: "precision@3" -> "Precision@3", "mrr" -> "MRR".
    """
    base, _, k = name.partition("@")
    pretty = {"precision": "Precision", "recall": "Recall", "f1": "F1", "mrr": "MRR", "map": "MAP"}.get(
        base, base.upper() if len(base) <= 4 else base.capitalize()
    )
    return f"{pretty}@{k}" if k else pretty


@attrs.frozen
class ModelScores:
    """
    Mean metrics of one model (zero-shot baseline or fine-tuned) on one variant's test users.
    """

    role: ModelRole
    label: str
    model: str
    users: int
    parse_failures: int
    metrics: tuple[tuple[str, float], ...]

    def metric(self, name: str) -> float:
        """
        The value of one metric.

        Raises:
            KeyError: when the metric was not computed.
        """
        for key, value in self.metrics:
            if key == name:
                return value
        raise KeyError(name)


@attrs.frozen
class VariantResults:
    """
    One ground-truth variant (the paper's profileData50 or profileData60): its settings, counts and scores.
    """

    name: str
    sampling: tuple[tuple[str, float | int], ...]
    counts: tuple[tuple[str, int], ...]
    models: tuple[ModelScores, ...]

    def model_scores(self, role: ModelRole) -> ModelScores:
        """
        The scores of the model with this role.

        Raises:
            KeyError: when no model has that role.
        """
        for m in self.models:
            if m.role == role:
                return m
        raise KeyError(role)


@attrs.frozen
class Results:
    """
    The whole experiment's scores.
    """

    experiment: str
    title: str
    metric_names: tuple[str, ...]
    variants: tuple[VariantResults, ...]
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON shape of ``results.json``.
        """
        return {
            "schema_version": self.schema_version,
            "experiment": self.experiment,
            "title": self.title,
            "metrics": list(self.metric_names),
            "variants": [
                {
                    "name": v.name,
                    "sampling": dict(v.sampling),
                    "counts": dict(v.counts),
                    "models": [
                        {
                            "role": m.role,
                            "label": m.label,
                            "model": m.model,
                            "users": m.users,
                            "parse_failures": m.parse_failures,
                            "metrics": dict(m.metrics),
                        }
                        for m in v.models
                    ],
                }
                for v in self.variants
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Results:
        """
        Read the JSON shape back (unknown keys are ignored, so newer files still load).
        """
        return cls(
            schema_version=int(data["schema_version"]),
            experiment=str(data["experiment"]),
            title=str(data["title"]),
            metric_names=tuple(data["metrics"]),
            variants=tuple(
                VariantResults(
                    name=v["name"],
                    sampling=tuple(v["sampling"].items()),
                    counts=tuple(v["counts"].items()),
                    models=tuple(
                        ModelScores(
                            role=m["role"],
                            label=m["label"],
                            model=m["model"],
                            users=int(m["users"]),
                            parse_failures=int(m["parse_failures"]),
                            metrics=tuple((k, float(x)) for k, x in m["metrics"].items()),
                        )
                        for m in v["models"]
                    ),
                )
                for v in data["variants"]
            ),
        )
