"""Measure semrec's settings on a validation split and pick the best configuration.

A grid is a partial override of a `RecommenderConfig`, written as setting paths:

    {"profile.text_weight": [0.25, 0.5], "collaborative.weight": [0, 1]}

Every combination is scored as a `Recommender` with that configuration would serve it, through
the serving kernel of `semrec.evaluation.hybrid` (`fit_items`, `user_vectors`, and
`VectorLayout.query` for the queries). The fused score is linear in the query-time weights
(`collaborative.weight`, `collaborative.popularity_weight`), so for each profile and item fit
the three terms' users x items matrices are computed once, each from queries made by
`VectorLayout.query`, and each weight pair is their weighted sum.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..collaborative import CollaborativeConfig, VectorLayout
from ..errors import ConfigError
from ..profiles import ProfileConfig
from ..recommender import RecommenderConfig
from .hybrid import fit_items, profile_key, query_vectors, user_vectors
from .protocol import EvalTargets, TrainData, rank, score_lists
from .semantic import UserParts

log = logging.getLogger(__name__)

#: The grid the shipped defaults were chosen from (every combination is scored on validation).
DEFAULT_GRID: dict[str, Sequence[Any]] = {
    "profile.half_life": (1.0, 2.0, 3.0, 10.0),
    "profile.text_weight": (0.0, 0.25, 0.5, 0.75, 1.0),
    "collaborative.weight": (0.0, 1.0, 2.0),
    "collaborative.popularity_weight": (-0.3, -0.2, -0.1, 0.0, 0.1),
    "collaborative.dim": (512,),
    "collaborative.cold_shrinkage": (0.0, 3.0, 10.0),
}

#: Collaborative settings applied at query time (the rest are fixed by the fit).
_QUERY_TIME = ("weight", "popularity_weight")


def setting_paths() -> list[str]:
    """Every setting a grid may vary: the fields of `ProfileConfig` and `CollaborativeConfig`.

    Example:
        >>> "collaborative.weight" in setting_paths()
        True
    """
    return [f"profile.{name}" for name in ProfileConfig.model_fields] + [
        f"collaborative.{name}" for name in CollaborativeConfig.model_fields
    ]


def configure(base: RecommenderConfig, settings: Mapping[str, Any]) -> RecommenderConfig:
    """`base` with the settings at these paths replaced (values are validated).

    Example:
        >>> configure(RecommenderConfig(), {"collaborative.weight": 0.5}).collaborative.weight
        0.5
    """
    check_paths(settings)
    data = base.model_dump()
    for path, value in settings.items():
        section, name = path.split(".")
        data[section][name] = value
    return RecommenderConfig.model_validate(data)


def check_paths(settings: Mapping[str, Any]) -> None:
    """Raise `ConfigError` naming the first path that is not a setting the scorer measures."""
    valid = setting_paths()
    for path in settings:
        if path not in valid:
            raise ConfigError(
                f"Grid setting {path!r} is not a setting the offline scorer measures; expected a path of "
                f"RecommenderConfig such as 'profile.text_weight' or 'collaborative.weight', one of: {', '.join(valid)}."
            )


def setting(config: RecommenderConfig, path: str) -> Any:
    """The value of one setting path of `config`."""
    section, name = path.split(".")
    return getattr(getattr(config, section), name)


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
    """One configuration and its validation metrics."""

    config: RecommenderConfig
    metrics: dict


def grid_search(
    data: TrainData,
    targets: EvalTargets,
    item_vectors: np.ndarray,
    encoder,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    base: RecommenderConfig | None = None,
    k: int = 10,
    exclude_seen: bool = True,
    seed: int = 0,
) -> list[Trial]:
    """Score every combination of `grid` (setting paths -> values, see `setting_paths`; other
    settings are `base`'s, by default `RecommenderConfig()`), in the grid's order.

    Combinations that score the same (the collaborative fit's settings when
    `collaborative.weight` is 0; every collaborative setting when `collaborative.dim` is 0) are
    scored once, with the first value of each.

    Example:
        >>> trials = grid_search(data, targets, vectors, encoder, grid={"collaborative.weight": [0, 1]})  # doctest: +SKIP
        >>> select(trials).config.collaborative.weight                                                    # doctest: +SKIP
    """
    base = base or RecommenderConfig()
    grid = DEFAULT_GRID if grid is None else grid
    check_paths(grid)
    paths = list(grid)
    configs, seen = [], set()
    for values in itertools.product(*(tuple(grid[p]) for p in paths)):
        config = configure(base, dict(zip(paths, values)))
        key = _scored_as(config)
        if key not in seen:
            seen.add(key)
            configs.append(config)
    users = targets.users
    groups: dict[tuple[str, str, str], list[int]] = {}
    for n, config in enumerate(configs):
        groups.setdefault((profile_key(config.profile), _json(config.profile.text_weight), _fit_key(config)), []).append(n)
    parts: dict[str, tuple[UserParts, np.ndarray | None]] = {}
    fits: dict[str, tuple[VectorLayout, np.ndarray]] = {}
    metrics: dict[int, dict] = {}
    for (key, _, fit_key), members in groups.items():
        first = configs[members[0]]
        profile, collaborative = first.profile, first.collaborative
        if key not in parts:
            needs_summary = any(c.profile.text_weight > 0 for c in configs if profile_key(c.profile) == key)
            user_parts = UserParts(data, users, profile)
            parts[key] = (user_parts, user_parts.summaries(encoder) if needs_summary else None)
            log.info("profile %s: %d users' profiles built", key, len(users))
        user_parts, summaries = parts[key]
        if fit_key not in fits:
            fits[fit_key] = fit_items(data, item_vectors, collaborative, seed=seed)
        layout, items = fits[fit_key]
        stored = user_vectors(user_parts, summaries, layout, data.item_ids, items, profile.text_weight)
        text, cf, pop = _terms(layout, stored, items, cf=any(configs[n].collaborative.weight for n in members))
        for n in members:
            c = configs[n].collaborative
            scores = text
            if layout.hybrid and c.weight:
                scores = scores + c.weight * cf
            if layout.hybrid and c.popularity_weight:
                scores = scores + c.popularity_weight * pop
            topk = rank(_Matrix(scores, users), data, users, k, exclude_seen=exclude_seen)
            metrics[n] = score_lists(topk, data, targets, k=k)
        log.info("%d of %d configurations scored", len(metrics), len(configs))
    return [Trial(config, metrics[n]) for n, config in enumerate(configs)]


def _terms(layout: VectorLayout, stored: np.ndarray, items: np.ndarray, *, cf: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The fused score's terms before weighting, each from queries `VectorLayout.query` makes:
    text (both weights 0), collaborative (text part zero, weight 1) and popularity (one row)."""
    text = query_vectors(layout, stored, weight=0.0, popularity_weight=0.0) @ items.T
    if not layout.hybrid:
        return text, None, None
    zero = np.zeros(layout.text, np.float32)
    collaborative = None
    if cf:
        collaborative = np.stack([layout.query(zero, layout.cf_part(u), weight=1.0) for u in stored]) @ items.T
    popularity = layout.query(zero, None, popularity_weight=1.0) @ items.T
    return text, collaborative, popularity


def _scored_as(config: RecommenderConfig) -> tuple:
    """What decides the scores: without the collaborative term its fit does not matter; a
    text-only store ignores every collaborative setting."""
    c = config.collaborative
    if c.dim == 0:
        return _json(config.profile), "text only"
    if c.weight == 0:
        return _json(config.profile), "popularity", c.popularity_weight
    return _json(config.profile), _json(c)


def _fit_key(config: RecommenderConfig) -> str:
    return config.collaborative.model_dump_json(exclude=set(_QUERY_TIME))


def _json(value: Any) -> str:
    return value.model_dump_json() if hasattr(value, "model_dump_json") else repr(value)


def select(
    trials: list[Trial], *, k: int = 10, min_ndcg: float = 0.0, min_coverage: float = 0.0, min_cold_recall: float = 0.0
) -> Trial:
    """The trial with the best NDCG@k among those with NDCG@k >= `min_ndcg`, coverage@k >=
    `min_coverage` and cold-slice recall > `min_cold_recall`; when none qualifies, the coverage
    condition is dropped first, then the cold one. Ties go to the higher recall@k, then to the
    earlier trial."""
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
