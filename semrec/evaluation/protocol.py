"""The evaluation protocol: index a split, rank the full catalogue per user, and score the lists.

Every method is a `Scorer` (fit on a split's `TrainData`, then score users x items in chunks); the
same candidates (the whole catalogue, minus each user's training history unless
`exclude_seen=False`) and the same metrics apply to all of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..catalog import Item
from ..errors import ConfigError
from . import metrics as M
from .splits import Split

log = logging.getLogger(__name__)

#: A target with at most this many training interactions is "cold".
COLD_MAX_INTERACTIONS = 2


@dataclass
class TrainData:
    """A split's training events as indices over the catalogue.

    Attributes:
        item_ids: catalogue item ids; column j of every matrix is item_ids[j].
        items: the catalogue `Item`s (text built with the split's tag cutoff), same order.
        user_ids: every user with training events; row u is user_ids[u].
        matrix: users x items, 1 where the user interacted (any number of times).
        events: the training events with integer columns `u` and `i`, in time order per user.
        counts: distinct training users per item.
    """

    item_ids: np.ndarray
    items: list[Item]
    user_ids: np.ndarray
    matrix: sp.csr_matrix
    events: pd.DataFrame
    counts: np.ndarray
    item_index: dict[str, int] = field(repr=False, default_factory=dict)
    user_index: dict[str, int] = field(repr=False, default_factory=dict)

    @classmethod
    def build(cls, train: pd.DataFrame, items: list[Item]) -> "TrainData":
        item_ids = np.array([i.item_id for i in items])
        item_index = {iid: j for j, iid in enumerate(item_ids)}
        known = train["item_id"].isin(item_index)
        if not known.all():
            raise ConfigError(
                f"{int((~known).sum())} training event(s) name items not in the catalogue, e.g. "
                f"{train.loc[~known, 'item_id'].head(3).tolist()}; fix the catalogue (rejected rows?)."
            )
        events = train.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
        user_ids = events["user_id"].drop_duplicates().to_numpy()
        user_index = {u: r for r, u in enumerate(user_ids)}
        events = events.assign(u=events["user_id"].map(user_index).astype(np.int64), i=events["item_id"].map(item_index).astype(np.int64))
        matrix = sp.csr_matrix(
            (np.ones(len(events), np.float32), (events["u"].to_numpy(), events["i"].to_numpy())),
            shape=(len(user_ids), len(item_ids)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        counts = np.asarray(matrix.sum(0)).ravel()
        return cls(item_ids, items, user_ids, matrix, events, counts, item_index, user_index)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def popularity(self) -> np.ndarray:
        """Share of training users who interacted with each item."""
        return self.counts / max(len(self.user_ids), 1)


class Scorer(Protocol):
    """A recommender under evaluation: fit on training data, then score users x items."""

    name: str

    def fit(self, data: TrainData) -> "Scorer": ...

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) scores (higher = better) for user rows of the fitted data."""
        ...


@dataclass
class EvalTargets:
    """The users evaluated in a split (rows of `TrainData`) and their target item indices."""

    users: np.ndarray
    targets: list[np.ndarray]

    @classmethod
    def build(cls, split: Split, data: TrainData) -> "EvalTargets":
        frame = split.targets[split.targets["user_id"].isin(data.user_index) & split.targets["item_id"].isin(data.item_index)]
        dropped = split.targets["user_id"].nunique() - frame["user_id"].nunique()
        if dropped:
            log.info("%s: %d target user(s) without training history or with unknown items skipped", split.name, dropped)
        groups = frame.groupby("user_id", sort=False)["item_id"]
        users, targets = [], []
        for user, group in groups:
            users.append(data.user_index[user])
            targets.append(np.array([data.item_index[i] for i in group], dtype=np.int64))
        order = np.argsort(users)
        return cls(np.asarray(users, dtype=np.int64)[order], [targets[o] for o in order])


def rank(scorer: Scorer, data: TrainData, users: np.ndarray, k: int, *, exclude_seen: bool = True, chunk: int = 256) -> np.ndarray:
    """(len(users), k) item indices, best first, over the full catalogue; training items of each
    user are excluded unless `exclude_seen=False`. Users are scored `chunk` at a time."""
    k = min(k, data.n_items)
    prepare = getattr(scorer, "prepare", None)
    if prepare is not None:  # per-user work (profiles, summaries) done once for all users
        prepare(users)
    out = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), chunk):
        rows = users[start : start + chunk]
        scores = np.array(scorer.score(rows), dtype=np.float32, copy=True)
        if scores.shape != (len(rows), data.n_items):
            raise ConfigError(f"{scorer.name} returned scores of shape {scores.shape}; expected {(len(rows), data.n_items)}.")
        scores[~np.isfinite(scores)] = -np.inf
        if exclude_seen:
            seen = data.matrix[rows].tocoo()
            scores[seen.row, seen.col] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(scores, top, 1)
        # best first; ties by item index so results are deterministic
        order = np.lexsort((top, -part), axis=1)
        out[start : start + len(rows)] = np.take_along_axis(top, order, 1)
    return out


def evaluate(
    scorer: Scorer,
    data: TrainData,
    targets: EvalTargets,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    item_vectors: np.ndarray | None = None,
    chunk: int = 256,
) -> dict:
    """Rank, then every metric: accuracy (with standard errors), coverage, diversity,
    popularity bias, and the cold-item slice (targets with <= 2 training interactions)."""
    topk = rank(scorer, data, targets.users, k, exclude_seen=exclude_seen, chunk=chunk)
    return score_lists(topk, data, targets, k=k, item_vectors=item_vectors)


def score_lists(topk: np.ndarray, data: TrainData, targets: EvalTargets, *, k: int, item_vectors: np.ndarray | None = None) -> dict:
    """The metrics of already ranked lists (see `evaluate`)."""
    t = targets.targets
    result = {
        f"recall@{k}": M.Estimate.of(M.recall_at_k(topk, t)),
        f"ndcg@{k}": M.Estimate.of(M.ndcg_at_k(topk, t)),
        f"mrr@{k}": M.Estimate.of(M.mrr_at_k(topk, t)),
        f"coverage@{k}": M.coverage_at_k(topk, data.n_items),
        "popularity": M.Estimate.of(M.popularity_bias(topk, data.popularity)),
    }
    if item_vectors is not None:
        result["diversity"] = M.Estimate.of(M.intra_list_diversity(topk, item_vectors))
    cold = [tt[data.counts[tt] <= COLD_MAX_INTERACTIONS] for tt in t]
    keep = np.array([len(c) > 0 for c in cold], dtype=bool)
    result[f"cold_recall@{k}"] = M.Estimate.of(M.recall_at_k(topk[keep], [c for c, kk in zip(cold, keep) if kk]))
    return result


def targets_for(split: Split, data: TrainData) -> EvalTargets:
    return EvalTargets.build(split, data)


def fit_all(scorers: Sequence[Scorer], data: TrainData) -> None:
    for s in scorers:
        s.fit(data)
