"""Measure semrec's levers on a validation split and pick the best configuration.

The levers: recency (`ProfileConfig.half_life`), the user vector's blend
(`ProfileConfig.text_weight`: 1 = text summary only, 0 = pooled history only), the
collaborative term (weight, dimension, cold-item shrinkage) and the popularity prior. The fused
score is linear in its terms, so each term's users x items matrix is computed once per profile
setting and the grid is a sum of matrices; `SemrecScorer` computes the same scores from
concatenated vectors.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..profiles import ProfileConfig
from .hybrid import HybridConfig, collaborative_vectors, impute_cold, popularity_feature
from .protocol import EvalTargets, TrainData, rank, score_lists
from .semantic import UserParts

log = logging.getLogger(__name__)

#: The default grid (every combination is scored on validation).
DEFAULT_GRID: dict[str, Sequence[Any]] = {
    "half_life": (1.0, 2.0, 3.0, 10.0),
    "text_weight": (0.0, 0.25, 0.5, 0.75, 1.0),
    "collaborative_weight": (0.0, 1.0, 2.0),
    "popularity_weight": (-0.3, -0.2, -0.1, 0.0, 0.1),
    "cf_dim": (512,),
    "cf_cold_shrinkage": (0.0, 3.0, 10.0),
}


class _Matrix:
    """A precomputed users x items score matrix as a `Scorer`."""

    name = "matrix"

    def __init__(self, scores: np.ndarray, users: np.ndarray) -> None:
        self.scores, self.users = scores, users

    def fit(self, data: TrainData) -> "_Matrix":
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[np.searchsorted(self.users, users)]


@dataclass
class Trial:
    config: HybridConfig
    metrics: dict


def grid_search(
    data: TrainData,
    targets: EvalTargets,
    item_vectors: np.ndarray,
    encoder,
    *,
    grid: dict[str, Sequence[Any]] | None = None,
    base: HybridConfig | None = None,
    k: int = 10,
    exclude_seen: bool = True,
    seed: int = 0,
) -> list[Trial]:
    """Score every configuration of `grid` (keys: half_life, text_weight, collaborative_weight,
    popularity_weight, cf_dim, cf_cold_shrinkage; missing keys take `base`'s value)."""
    base = base or HybridConfig()
    g = {key: tuple(values) for key, values in {**_single(base), **(grid or DEFAULT_GRID)}.items()}
    users = targets.users
    ids = data.item_ids
    by_id = dict(zip(ids, item_vectors))
    pop = popularity_feature(data.counts)
    needs_cf = any(w > 0 for w in g["collaborative_weight"])
    raw = {d: collaborative_vectors(data.matrix, d, user_damping=base.cf_user_damping, seed=seed) for d in g["cf_dim"]} if needs_cf else {}
    cf_items = {
        (d, kappa): impute_cold(raw[d], item_vectors, data.counts, shrinkage=kappa, neighbours=base.cf_cold_neighbours)
        for d in raw
        for kappa in g["cf_cold_shrinkage"]
    }
    trials: list[Trial] = []
    for half_life in g["half_life"]:
        profile = base.profile.model_copy(update={"half_life": half_life})
        parts = UserParts(data, users, profile, encoder, summaries=any(t > 0 for t in g["text_weight"]))
        sem = {tw: parts.semantic(by_id, tw) @ item_vectors.T for tw in g["text_weight"]}
        # users pool the stored (cold-shrunk) cf vectors, as the Recommender does
        cf = {key: parts.pooled(dict(zip(ids, vecs))) @ vecs.T for key, vecs in cf_items.items()}
        for tw, wc, wp, dim, kappa in itertools.product(
            g["text_weight"], g["collaborative_weight"], g["popularity_weight"], g["cf_dim"], g["cf_cold_shrinkage"]
        ):
            if wc == 0 and (dim, kappa) != (g["cf_dim"][0], g["cf_cold_shrinkage"][0]):
                continue  # the cf settings do not matter without the cf term
            config = base.model_copy(
                update={
                    "profile": profile.model_copy(update={"text_weight": tw}),
                    "collaborative_weight": wc,
                    "popularity_weight": wp,
                    "cf_dim": dim,
                    "cf_cold_shrinkage": kappa,
                }
            )
            scores = base.semantic_weight * sem[tw] + wp * pop
            if wc:
                scores = scores + wc * cf[(dim, kappa)]
            topk = rank(_Matrix(scores, users), data, users, k, exclude_seen=exclude_seen)
            trials.append(Trial(config, score_lists(topk, data, targets, k=k)))
        log.info("half_life=%g: %d configurations scored", half_life, len(trials))
    return trials


def select(
    trials: list[Trial], *, k: int = 10, min_ndcg: float = 0.0, min_coverage: float = 0.0, min_cold_recall: float = 0.0
) -> Trial:
    """The trial with the best NDCG@k among those with NDCG@k >= `min_ndcg`, coverage@k >=
    `min_coverage` and cold-slice recall > `min_cold_recall`; when none qualifies, the coverage
    condition is dropped first, then the cold one."""
    def ok(t: Trial, coverage: bool, cold: bool) -> bool:
        m = t.metrics
        return (
            m[f"ndcg@{k}"].mean >= min_ndcg
            and (not coverage or m[f"coverage@{k}"] >= min_coverage)
            and (not cold or m[f"cold_recall@{k}"].mean > min_cold_recall)
        )

    pool = []
    for coverage, cold in ((True, True), (False, True), (False, False)):
        pool = [t for t in trials if ok(t, coverage, cold)]
        if pool:
            break
    pool = pool or trials
    return max(pool, key=lambda t: (t.metrics[f"ndcg@{k}"].mean, t.metrics[f"recall@{k}"].mean))


def _single(config: HybridConfig) -> dict[str, tuple]:
    return {
        "half_life": (config.profile.half_life,),
        "text_weight": (config.profile.text_weight,),
        "collaborative_weight": (config.collaborative_weight,),
        "popularity_weight": (config.popularity_weight,),
        "cf_dim": (config.cf_dim,),
        "cf_cold_shrinkage": (config.cf_cold_shrinkage,),
    }


def best_profile(trial: Trial) -> ProfileConfig:
    return trial.config.profile
