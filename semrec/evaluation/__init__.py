"""Offline evaluation: time-respecting splits, full-ranking metrics, collaborative baselines,
semrec's own scorer (what a `Recommender` with a given `RecommenderConfig` serves, built by the
serving functions), validation grids over `RecommenderConfig` settings, and one-call reports.

Example:
    >>> from semrec.evaluation import run_benchmark
    >>> report = run_benchmark("data/ml-latest-small")          # doctest: +SKIP
"""

from .baselines import ALS, ItemKNN, Popularity
from .hybrid import SemrecScorer, text_only
from .metrics import Estimate, coverage_at_k, intra_list_diversity, mrr_at_k, ndcg_at_k, popularity_bias, recall_at_k
from .protocol import EvalTargets, Scorer, TrainData, evaluate, rank
from .report import markdown, write_report
from .runner import run_benchmark
from .splits import Split, leave_last_out, temporal_split
from .tuning import DEFAULT_GRID, Trial, grid_search, select, setting_paths

__all__ = [
    "ALS",
    "DEFAULT_GRID",
    "Estimate",
    "EvalTargets",
    "ItemKNN",
    "Popularity",
    "Scorer",
    "SemrecScorer",
    "Split",
    "TrainData",
    "Trial",
    "coverage_at_k",
    "evaluate",
    "grid_search",
    "intra_list_diversity",
    "leave_last_out",
    "markdown",
    "mrr_at_k",
    "ndcg_at_k",
    "popularity_bias",
    "rank",
    "recall_at_k",
    "run_benchmark",
    "select",
    "setting_paths",
    "temporal_split",
    "text_only",
    "write_report",
]
