"""The collaborative half of semrec's hybrid score, and the layout that puts it in Qdrant.

    score(u, i) = <text_user(u), text(i)>                       # the semantic user vector
                + weight * <cf_user(u), cf(i)>                  # who-interacted-with-what
                + popularity_weight * pop(i)                    # a popularity prior

Every item point holds one vector `[text(i) | cf(i) | pop(i)]` and the query is
`[text_user | weight * cf_user | popularity_weight]`, so the fused score is one dot product and
one nearest-neighbour query in the store. `cf(i)` is row i of V*S from a truncated SVD of the
user x item matrix with unit-length columns (<cf_i, cf_j> ~ the co-occurrence cosine), shrunk
towards its text neighbours' cf vectors when the item has few interactions (`impute_cold`), so
new and rare items stay reachable. `cf_user(u)` is the unit-length, recency-weighted mean of the
user's history items' cf vectors (the same weights as the text vector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from .encoders import l2_normalize


class CollaborativeConfig(BaseModel):
    """The collaborative signal and popularity prior of a `Recommender` (defaults: the best
    configuration measured on MovieLens, see benchmarks/RESULTS.md §2).

    Args:
        dim: dimensions of the collaborative item vectors; 0 makes a text-only store. Fixed
            when a store is created (it is part of the stored vectors); near the number of users
            is best (512 on MovieLens's 610 users).
        weight: weight of the collaborative term at query time (0 = text only).
        popularity_weight: weight of the popularity prior at query time (negative favours the
            long tail: more coverage and cold-item recall for a little accuracy).
        cold_shrinkage: kappa; an item with n interactions gets n/(n+kappa) x its own cf vector +
            kappa/(n+kappa) x the similarity-weighted mean of its text neighbours' (0 = off).
        cold_neighbours: how many text neighbours (with >= `min_interactions`) are averaged.
        min_interactions: interactions an item needs to lend its cf vector to others.
        user_damping: rows are scaled by n_u ** -user_damping before the SVD (heavy users).
    """

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(512, ge=0)
    weight: float = Field(1.0, ge=0)
    popularity_weight: float = -0.2
    cold_shrinkage: float = Field(3.0, ge=0)
    cold_neighbours: int = Field(10, ge=1)
    min_interactions: int = Field(3, ge=1)
    user_damping: float = Field(0.0, ge=0)


@dataclass(frozen=True)
class VectorLayout:
    """Where the text, collaborative and popularity parts sit in a stored vector.

    Example:
        >>> layout = VectorLayout(text=2, collaborative=3)
        >>> layout.item_dim, layout.user_dim
        (6, 5)
        >>> layout.query(np.array([1.0, 0]), np.array([0, 1.0, 0]), weight=2, popularity_weight=-0.5).tolist()
        [1.0, 0.0, 0.0, 2.0, 0.0, -0.5]
    """

    text: int
    collaborative: int = 0

    @property
    def hybrid(self) -> bool:
        return self.collaborative > 0

    @property
    def item_dim(self) -> int:
        """text + collaborative + 1 popularity component (text only when not hybrid)."""
        return self.text + self.collaborative + (1 if self.hybrid else 0)

    @property
    def user_dim(self) -> int:
        """Users store text + collaborative parts; the weights are applied at query time."""
        return self.text + self.collaborative

    def text_part(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors)[..., : self.text]

    def cf_part(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors)[..., self.text : self.text + self.collaborative]

    def items(self, text: np.ndarray, cf: np.ndarray | None = None, popularity: np.ndarray | None = None) -> np.ndarray:
        """(n, item_dim) stored item vectors; missing parts are zeros."""
        text = np.asarray(text, dtype=np.float32)
        if not self.hybrid:
            return text
        n = len(text)
        cf = np.zeros((n, self.collaborative), np.float32) if cf is None else np.asarray(cf, np.float32)
        pop = np.zeros(n, np.float32) if popularity is None else np.asarray(popularity, np.float32)
        return np.hstack([text, cf, pop[:, None]]).astype(np.float32)

    def user(self, text: np.ndarray, cf: np.ndarray | None = None) -> np.ndarray:
        """One stored user vector: text part, then the unit-length pooled cf part."""
        if not self.hybrid:
            return np.asarray(text, np.float32)
        cf = np.zeros(self.collaborative, np.float32) if cf is None else cf
        return np.concatenate([text, cf]).astype(np.float32)

    def query(self, text: np.ndarray, cf: np.ndarray | None = None, *, weight: float = 0.0, popularity_weight: float = 0.0) -> np.ndarray:
        """The query vector whose dot product with stored items is the fused score."""
        text = np.asarray(text, np.float32)
        if not self.hybrid:
            return text
        cf = np.zeros(self.collaborative, np.float32) if cf is None else weight * np.asarray(cf, np.float32)
        return np.concatenate([text, cf, [popularity_weight]]).astype(np.float32)

    def to_dict(self) -> dict[str, int]:
        return {"text": self.text, "collaborative": self.collaborative}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], text_dim: int) -> "VectorLayout":
        """The layout a collection was created with (collections without one are text only)."""
        layout = metadata.get("layout") or {}
        return cls(text=int(layout.get("text", text_dim)), collaborative=int(layout.get("collaborative", 0)))


def collaborative_vectors(matrix: sp.csr_matrix, dim: int, *, user_damping: float = 0.0, seed: int = 0) -> np.ndarray:
    """(items, dim) collaborative item vectors: V*S of a truncated SVD of the column-normalised
    user x item matrix (rows scaled by n_u ** -user_damping first). Items without interactions
    get zero vectors; dimensions beyond the matrix's rank are zero.

    Example:
        >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
        >>> V = collaborative_vectors(X, 2)
        >>> bool(np.isclose(V[0] @ V[1], 1.0)), bool(np.isclose(V[0] @ V[2], 0.0))
        (True, True)
    """
    from scipy.sparse.linalg import svds

    X = sp.csr_matrix(matrix, dtype=np.float64)
    if user_damping:
        n_u = np.asarray(X.sum(1)).ravel()
        X = sp.diags(np.where(n_u > 0, n_u, 1.0) ** -user_damping) @ X
    col = np.sqrt(np.asarray(X.multiply(X).sum(0)).ravel())
    X = X @ sp.diags(np.where(col > 0, 1.0 / np.maximum(col, 1e-12), 0.0))
    k = min(dim, min(X.shape) - 1)
    if k < 1 or X.nnz == 0:
        return np.zeros((X.shape[1], dim), np.float32)
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(X.shape))
    _, s, vt = svds(X, k=k, v0=v0)
    vectors = (vt.T * s).astype(np.float32)
    if k < dim:
        vectors = np.pad(vectors, ((0, 0), (0, dim - k)))
    return vectors


def impute_cold(cf: np.ndarray, text_vectors: np.ndarray, counts: np.ndarray, *, shrinkage: float, neighbours: int = 10, min_count: int = 3, chunk: int = 2048) -> np.ndarray:
    """Shrink each item's cf vector towards the cf vectors of its nearest items by text:
    n/(n+kappa) * cf_i + kappa/(n+kappa) * sum_j cos(i,j)+ cf_j / sum_j cos(i,j)+ over its
    `neighbours` most similar items (by text vector) with >= `min_count` interactions.

    Example:
        >>> cf = np.array([[1.0, 0], [0, 1.0], [0, 0]], np.float32)
        >>> text = np.array([[1.0, 0], [0, 1.0], [0.8, 0.6]], np.float32)
        >>> impute_cold(cf, text, np.array([5, 5, 0]), shrinkage=1, neighbours=1, min_count=3)[2].tolist()
        [1.0, 0.0]
    """
    if shrinkage <= 0:
        return cf
    warm = np.flatnonzero(counts >= min_count)
    if len(warm) == 0:
        return cf
    m = min(neighbours, len(warm))
    imputed = np.zeros_like(cf)
    for start in range(0, len(cf), chunk):
        sims = text_vectors[start : start + chunk] @ text_vectors[warm].T
        rows = np.arange(sims.shape[0])
        own = np.searchsorted(warm, np.arange(start, start + sims.shape[0]))
        is_own = (own < len(warm)) & (warm[np.minimum(own, len(warm) - 1)] == np.arange(start, start + sims.shape[0]))
        sims[rows[is_own], own[is_own]] = -np.inf  # an item is not its own neighbour
        nb = np.argpartition(-sims, m - 1, axis=1)[:, :m]
        imputed[start : start + len(sims)] = neighbour_mean(np.take_along_axis(sims, nb, 1), cf[warm][nb])
    lam = (shrinkage / (counts + shrinkage)).astype(np.float32)[:, None]
    return ((1 - lam) * cf + lam * imputed).astype(np.float32)


def neighbour_mean(similarities: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Mean of neighbours' vectors weighted by their positive similarity: (..., m) x (..., m, d)."""
    w = np.maximum(similarities, 0)
    return np.einsum("...m,...md->...d", w, vectors) / np.maximum(w.sum(-1, keepdims=True), 1e-12)


def popularity_feature(counts: np.ndarray) -> np.ndarray:
    """log1p(count) / log1p(max count): 0 for unseen items, 1 for the most popular."""
    top = np.log1p(counts.max()) if len(counts) and counts.max() > 0 else 1.0
    return (np.log1p(counts) / top).astype(np.float32)


def fit_item_parts(matrix: sp.csr_matrix, text_vectors: np.ndarray, config: CollaborativeConfig, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From a users x items 0/1 matrix and the items' text vectors: (own cf vectors, cold-shrunk
    cf vectors to store, popularity feature). The one fit used online and in evaluation."""
    counts = np.asarray(matrix.sum(0)).ravel()
    own = collaborative_vectors(matrix, config.dim, user_damping=config.user_damping, seed=seed)
    stored = impute_cold(
        own, text_vectors, counts, shrinkage=config.cold_shrinkage, neighbours=config.cold_neighbours,
        min_count=config.min_interactions,
    )
    return own, stored, popularity_feature(counts)

