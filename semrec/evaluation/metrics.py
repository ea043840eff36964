"""Top-K metrics on ranked item indices. Per-user values, then means with standard errors.

`topk` is an (users, K) array of item indices, best first; `targets` is one array of relevant item
indices per user. Recall@K = hits / |targets| (for leave-last-out, one target: the hit rate);
NDCG@K uses binary gains and the ideal ranking of min(K, |targets|) hits; MRR@K = 1 / rank of the
first hit (0 if none in the top K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def hits_matrix(topk: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """(users, K) booleans: is the item at each rank relevant."""
    return np.stack([np.isin(row, t) for row, t in zip(topk, targets)]) if len(topk) else np.zeros((0, topk.shape[1]), bool)


def recall_at_k(topk: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """Per-user recall. Example: top [3, 1], targets {1, 7} -> 0.5.

    Example:
        >>> recall_at_k(np.array([[3, 1]]), [np.array([1, 7])]).tolist()
        [0.5]
    """
    hits = hits_matrix(topk, targets)
    sizes = np.array([len(t) for t in targets], dtype=float)
    return hits.sum(1) / np.maximum(sizes, 1)


def ndcg_at_k(topk: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """Per-user NDCG with binary gains.

    Example:
        >>> ndcg_at_k(np.array([[3, 1]]), [np.array([1])]).round(4).tolist()   # 1/log2(3)
        [0.6309]
    """
    k = topk.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hits = hits_matrix(topk, targets)
    dcg = (hits * discounts).sum(1)
    ideal = np.array([discounts[: min(len(t), k)].sum() for t in targets])
    return np.where(ideal > 0, dcg / np.maximum(ideal, 1e-12), 0.0)


def mrr_at_k(topk: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """Per-user reciprocal rank of the first hit.

    Example:
        >>> mrr_at_k(np.array([[3, 1, 2], [5, 6, 7]]), [np.array([2]), np.array([1])]).tolist()
        [0.3333333333333333, 0.0]
    """
    hits = hits_matrix(topk, targets)
    first = np.where(hits.any(1), hits.argmax(1) + 1, np.inf)
    return 1.0 / first


def coverage_at_k(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top K.

    Example:
        >>> coverage_at_k(np.array([[0, 1], [1, 2]]), 10)
        0.3
    """
    return len(np.unique(topk)) / n_items if n_items else 0.0


def intra_list_diversity(topk: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Per-user mean pairwise cosine distance (1 - cos) between the recommended items.

    Example:
        >>> vecs = np.array([[1.0, 0], [0, 1.0], [1.0, 0]])
        >>> intra_list_diversity(np.array([[0, 1], [0, 2]]), vecs).tolist()
        [1.0, 0.0]
    """
    k = topk.shape[1]
    if k < 2:
        return np.zeros(len(topk))
    v = item_vectors / np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)
    lists = v[topk]  # users, K, d
    sims = np.einsum("ukd,ujd->ukj", lists, lists)
    off = (sims.sum((1, 2)) - np.trace(sims, axis1=1, axis2=2)) / (k * (k - 1))
    return 1.0 - off


def popularity_bias(topk: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Per-user mean popularity of the recommended items (popularity: share of training users
    who interacted with the item).

    Example:
        >>> popularity_bias(np.array([[0, 1]]), np.array([0.5, 0.1, 0.0])).tolist()
        [0.3]
    """
    return popularity[topk].mean(1)


@dataclass
class Estimate:
    """A mean over users with its standard error."""

    mean: float
    se: float
    n: int

    @classmethod
    def of(cls, values: np.ndarray) -> "Estimate":
        values = np.asarray(values, dtype=float)
        n = len(values)
        if n == 0:
            return cls(float("nan"), float("nan"), 0)
        se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        return cls(float(values.mean()), se, n)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "se": self.se, "n": self.n}
