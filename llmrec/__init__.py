"""
llmrec: run, reproduce and extend "LLM as recommender" experiments from one TOML spec.

The typed API mirrors ``llmrec run spec.toml``::

    import llmrec

    spec = llmrec.parse_spec(open("specs/demo.toml").read(), source="specs/demo.toml")
    dataset = llmrec.generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    provider = llmrec.FakeProvider.for_movies(dataset.movies)
    outcome = llmrec.run_experiment(spec, dataset, provider)
    html = llmrec.render_report(outcome.results)
"""

from llmrec.data import Dataset, Movies, Ratings
from llmrec.data.netflix import read_netflix, write_netflix
from llmrec.data.synthetic import generate_synthetic
from llmrec.errors import DataError, LlmrecError, ParseError, ProviderError, SpecError, SpecProblem
from llmrec.evaluate import ExperimentOutcome, MemoryStore, run_experiment, run_finetune
from llmrec.metrics import METRICS, metric_names, score_list
from llmrec.parsing import ParsedItem, ParsedList, TitleMatcher, parse_recommendations
from llmrec.prompts import build_example, build_messages
from llmrec.providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    FineTuneExample,
    FineTuneJob,
    FineTuneRequest,
    Hyperparameters,
    JobState,
    Provider,
    Usage,
)
from llmrec.providers.fake import FakeProvider
from llmrec.report import render_report, report_assets
from llmrec.results import ModelScores, Results, VariantResults
from llmrec.sampling import GroundTruth, Sample, assign_splits, build_index, derive_ground_truth, sample_users
from llmrec.spec import Spec, parse_spec

__all__ = [
    "METRICS",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "DataError",
    "Dataset",
    "ExperimentOutcome",
    "FakeProvider",
    "FineTuneExample",
    "FineTuneJob",
    "FineTuneRequest",
    "GroundTruth",
    "Hyperparameters",
    "JobState",
    "LlmrecError",
    "MemoryStore",
    "ModelScores",
    "Movies",
    "ParseError",
    "ParsedItem",
    "ParsedList",
    "Provider",
    "ProviderError",
    "Ratings",
    "Results",
    "Sample",
    "Spec",
    "SpecError",
    "SpecProblem",
    "TitleMatcher",
    "Usage",
    "VariantResults",
    "assign_splits",
    "build_example",
    "build_index",
    "build_messages",
    "derive_ground_truth",
    "generate_synthetic",
    "metric_names",
    "parse_recommendations",
    "parse_spec",
    "read_netflix",
    "render_report",
    "report_assets",
    "run_experiment",
    "run_finetune",
    "sample_users",
    "score_list",
    "write_netflix",
]
