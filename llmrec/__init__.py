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

from llmrec.baselines import (
    Baseline,
    fit_ease,
    fit_item_knn,
    fit_popular,
    fit_random,
    interactions_from_pairs,
    interactions_from_ratings,
)
from llmrec.data import Dataset, Movies, Ratings
from llmrec.data.movielens import read_movielens
from llmrec.data.netflix import read_netflix, write_netflix
from llmrec.data.synthetic import generate_synthetic, write_synthetic_netflix
from llmrec.errors import (
    DataError,
    LlmrecError,
    MissingExtraError,
    ParseError,
    ProviderError,
    SpecError,
    SpecProblem,
)
from llmrec.evaluate import ExperimentOutcome, run_experiment
from llmrec.executor import Executor, ExecutorError, ProcessExecutor, SerialExecutor
from llmrec.ground_truth import (
    future_global_ground_truth,
    future_ground_truth,
    global_cut_day,
    knn_ground_truth,
    ratings_before,
)
from llmrec.metrics import METRICS, ideal_scores, metric_names, score_list
from llmrec.parsing import (
    AnswerFlags,
    ParsedItem,
    ParsedList,
    TitleMatcher,
    answer_flags,
    parse_recommendations,
)
from llmrec.prompts import build_example, build_messages
from llmrec.providers.base import (
    Backend,
    BatchChat,
    ChatCompleter,
    ChatMessage,
    ChatRequest,
    ChatResult,
    FineTuneExample,
    FineTuneJob,
    FineTuner,
    FineTuneRequest,
    Hyperparameters,
    JobEvent,
    JobState,
    Provider,
    Usage,
)
from llmrec.providers.fake import FakeProvider
from llmrec.ragged import Ragged
from llmrec.ray_executor import RayExecutor
from llmrec.report import render_report, report_assets
from llmrec.results import (
    Comparison,
    Funnel,
    ModelScores,
    Prediction,
    PredictionItem,
    Results,
    SeedSpread,
    VariantResults,
)
from llmrec.sampling import GroundTruth, Sample, assign_splits, build_index, derive_ground_truth, sample_users
from llmrec.scoring import beyond_accuracy, grounding_rates, ranked_ids
from llmrec.spec import Spec, parse_spec
from llmrec.stats import bootstrap_ci, bootstrap_mean_ci, compare_paired, holm, sign_flip_pvalue
from llmrec.store import DiskRunStore, MemoryRunStore, RunStore, StageRecord

__all__ = [
    "METRICS",
    "AnswerFlags",
    "Backend",
    "Baseline",
    "BatchChat",
    "ChatCompleter",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "Comparison",
    "DataError",
    "Dataset",
    "DiskRunStore",
    "Executor",
    "ExecutorError",
    "ExperimentOutcome",
    "FakeProvider",
    "FineTuneExample",
    "FineTuneJob",
    "FineTuneRequest",
    "FineTuner",
    "Funnel",
    "GroundTruth",
    "Hyperparameters",
    "JobEvent",
    "JobState",
    "LlmrecError",
    "MemoryRunStore",
    "MissingExtraError",
    "ModelScores",
    "Movies",
    "ParseError",
    "ParsedItem",
    "ParsedList",
    "Prediction",
    "PredictionItem",
    "ProcessExecutor",
    "Provider",
    "ProviderError",
    "Ragged",
    "Ratings",
    "RayExecutor",
    "Results",
    "RunStore",
    "Sample",
    "SeedSpread",
    "SerialExecutor",
    "Spec",
    "SpecError",
    "SpecProblem",
    "StageRecord",
    "TitleMatcher",
    "Usage",
    "VariantResults",
    "answer_flags",
    "assign_splits",
    "beyond_accuracy",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "build_example",
    "build_index",
    "build_messages",
    "compare_paired",
    "derive_ground_truth",
    "fit_ease",
    "fit_item_knn",
    "fit_popular",
    "fit_random",
    "future_global_ground_truth",
    "future_ground_truth",
    "generate_synthetic",
    "global_cut_day",
    "grounding_rates",
    "holm",
    "ideal_scores",
    "interactions_from_pairs",
    "interactions_from_ratings",
    "knn_ground_truth",
    "metric_names",
    "parse_recommendations",
    "parse_spec",
    "ranked_ids",
    "ratings_before",
    "read_movielens",
    "read_netflix",
    "render_report",
    "report_assets",
    "run_experiment",
    "sample_users",
    "score_list",
    "sign_flip_pvalue",
    "write_netflix",
    "write_synthetic_netflix",
]
