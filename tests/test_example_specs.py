"""
Every spec in specs/ loads (they are the documented examples).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from llmrec.spec import parse_spec

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.toml"))


def test_the_examples_exist():
    """The demo and the paper's spec are shipped."""
    assert {p.name for p in SPECS} >= {"demo.toml", "paper.toml"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_spec_loads(path):
    """The spec parses without problems."""
    spec = parse_spec(path.read_text(encoding="utf-8"), source=str(path), base_dir=str(path.parent))

    assert spec.experiment.name == path.stem


def test_paper_spec_has_the_papers_settings():
    """specs/paper.toml holds Table 1's hyperparameters, both variants and the OpenAI provider."""
    path = next(p for p in SPECS if p.name == "paper.toml")
    spec = parse_spec(path.read_text(encoding="utf-8"))

    assert spec.finetune.base_model == "gpt-4o-mini-2024-07-18"
    assert (spec.finetune.batch_size, spec.finetune.epochs, spec.finetune.learning_rate_multiplier) == (
        32,
        2,
        1.0,
    )
    assert [(v.name, v.watch_factor, v.neighbor_min_stars) for v in spec.variant] == [
        ("profileData50", 0.5, 5),
        ("profileData60", 0.6, 4),
    ]
    assert spec.provider.kind == "openai"
    assert spec.sampling.users == 10000


def _load(name):
    path = next(p for p in SPECS if p.name == name)
    return parse_spec(path.read_text(encoding="utf-8"), source=str(path), base_dir=str(path.parent))


def test_readings_spec_sets_one_variant_per_reading():
    """specs/paper-readings.toml crosses the two ambiguous readings on the paper's sampling, with the fake."""
    spec = _load("paper-readings.toml")
    paper = _load("paper.toml")
    readings = [
        (s.ground_truth_excludes, s.neighbor_min_shared)
        for s in (spec.variant_sampling(v) for v in spec.variant)
    ]

    assert sorted(readings) == [("profile", 1), ("profile", 10), ("rated", 1), ("rated", 10)]
    assert {(s.watch_factor, s.neighbor_min_stars) for s in map(spec.variant_sampling, spec.variant)} == {
        (0.5, 5)
    }
    assert spec.sampling.profile_size == 10
    assert attrs.evolve(spec.sampling, ground_truth_excludes="rated", neighbor_min_shared=1) == paper.sampling
    assert spec.split == paper.split
    assert spec.provider.kind == "fake"
    assert spec.dataset.format == "synthetic"


def test_demo_runs_three_seeds_and_the_paper_one():
    """The demo repeats the sampling with three seeds (the fake is free); the paper pays for one."""
    demo = _load("demo.toml")
    paper = _load("paper.toml")

    assert demo.experiment.seed in demo.experiment.seeds
    assert len(set(demo.experiment.seeds)) == 3
    assert paper.experiment.seeds == ()
