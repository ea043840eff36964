"""Offline evaluation: time-respecting splits, full-ranking metrics, collaborative baselines,
semrec's own scorer, and one-call benchmark reports.

Example:
    >>> from semrec.evaluation import run_benchmark
    >>> report = run_benchmark("data/ml-latest-small")          # doctest: +SKIP
"""

from .baselines import ALS, ItemKNN, Popularity
from .hybrid import DEFAULT_CONFIG, HybridConfig, SemrecScorer
from .metrics import Estimate, coverage_at_k, intra_list_diversity, mrr_at_k, ndcg_at_k, popularity_bias, recall_at_k
from .protocol import EvalTargets, Scorer, TrainData, evaluate, rank
from .report import markdown, write_report
from .runner import run_benchmark
from .semantic import SemanticScorer
from .splits import Split, leave_last_out, temporal_split

__all__ = [
    "ALS",
    "DEFAULT_CONFIG",
    "Estimate",
    "EvalTargets",
    "HybridConfig",
    "ItemKNN",
    "Popularity",
    "Scorer",
    "SemanticScorer",
    "SemrecScorer",
    "Split",
    "TrainData",
    "coverage_at_k",
    "evaluate",
    "intra_list_diversity",
    "leave_last_out",
    "markdown",
    "mrr_at_k",
    "ndcg_at_k",
    "popularity_bias",
    "rank",
    "recall_at_k",
    "run_benchmark",
    "temporal_split",
    "write_report",
]
