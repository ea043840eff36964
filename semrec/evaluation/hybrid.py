"""semrec's full scorer: the semantic user vector, plus a collaborative vector per item, plus a
popularity prior, fused as one weighted dot product.

    score(u, i) = semantic_weight      * <user_vector(u), text_vector(i)>
                + collaborative_weight * <pooled_cf(u),   cf_vector(i)>
                + popularity_weight    * log1p(count(i)) / log1p(max count)

`cf_vector(i)` is row i of V*S from a truncated SVD of the user x item matrix whose columns are
scaled to unit length (so <cf_i, cf_j> approximates the co-occurrence cosine of ItemKNN), and
`pooled_cf(u)` is the unit-length, recency-weighted mean of the user's history items' own cf
vectors (the candidates' cf vectors are shrunk towards their text neighbours' when they have few
interactions, see `impute_cold`),
with the same `UserProfile.pooling_weights` as the semantic vector. The three terms are one dot
product of concatenated vectors, so the fused ranking is a single nearest-neighbour query:
item = [text_vector, cf_vector, pop], user = [w_sem * user_vector, w_cf * pooled_cf, w_pop].
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from ..profiles import ProfileConfig
from .protocol import TrainData
from .semantic import UserParts


class HybridConfig(BaseModel):
    """One configuration of semrec's scorer (every lever measured on the validation split).

    Args:
        profile: the `ProfileConfig` (half_life = recency weighting, text_weight = blend of the
            summary vector and the pooled item vectors).
        semantic_weight / collaborative_weight / popularity_weight: weights of the three terms.
        cf_dim: dimension of the collaborative item vectors.
        cf_user_damping: rows (users) of the matrix are scaled by n_u ** -damping before the
            SVD, so heavy users do not dominate the co-occurrence.
        cf_cold_shrinkage: kappa; an item with n interactions gets the cf vector
            n/(n+kappa) * own + kappa/(n+kappa) * imputed, where imputed is the cosine-weighted
            mean cf vector of its `cf_cold_neighbours` nearest items by text vector among items
            with >= 3 interactions (so new and rare items are reachable). 0 turns it off.
    """

    model_config = ConfigDict(extra="forbid")

    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    semantic_weight: float = Field(1.0, ge=0)
    collaborative_weight: float = Field(0.0, ge=0)
    popularity_weight: float = 0.0
    cf_dim: int = Field(512, ge=1)
    cf_user_damping: float = Field(0.0, ge=0)
    cf_cold_shrinkage: float = Field(10.0, ge=0)
    cf_cold_neighbours: int = Field(10, ge=1)

    def label(self) -> str:
        p = self.profile
        parts = [f"tw={p.text_weight:g}", f"hl={p.half_life:g}"]
        if self.collaborative_weight:
            parts.append(f"cf={self.collaborative_weight:g}x{self.cf_dim}")
        if self.popularity_weight:
            parts.append(f"pop={self.popularity_weight:g}")
        if self.collaborative_weight and self.cf_cold_shrinkage:
            parts.append(f"kappa={self.cf_cold_shrinkage:g}")
        if self.semantic_weight != 1:
            parts.append(f"sem={self.semantic_weight:g}")
        return "semrec(" + ",".join(parts) + ")"


def collaborative_vectors(matrix: sp.csr_matrix, dim: int, *, user_damping: float = 0.0, seed: int = 0) -> np.ndarray:
    """(items, dim) collaborative item vectors: V*S of a truncated SVD of the column-normalised
    user x item matrix (rows scaled by n_u ** -user_damping first). Items without interactions
    get zero vectors.

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
        w = np.maximum(np.take_along_axis(sims, nb, 1), 0)
        imputed[start : start + len(sims)] = np.einsum("im,imd->id", w, cf[warm][nb]) / np.maximum(w.sum(1, keepdims=True), 1e-12)
    lam = (shrinkage / (counts + shrinkage)).astype(np.float32)[:, None]
    return ((1 - lam) * cf + lam * imputed).astype(np.float32)


def popularity_feature(counts: np.ndarray) -> np.ndarray:
    """log1p(count) / log1p(max count): 0 for unseen items, 1 for the most popular."""
    top = np.log1p(counts.max()) if len(counts) and counts.max() > 0 else 1.0
    return (np.log1p(counts) / top).astype(np.float32)


class SemrecScorer:
    """semrec's recommendations under a `HybridConfig` (see the module docstring)."""

    def __init__(self, item_vectors: np.ndarray, encoder, config: HybridConfig | None = None, *, seed: int = 0, name: str | None = None) -> None:
        self.item_vectors = item_vectors
        self.encoder = encoder
        self.config = config or HybridConfig()
        self.seed = seed
        self.name = name or self.config.label()
        self._parts: UserParts | None = None

    def fit(self, data: TrainData) -> "SemrecScorer":
        self._data = data
        cfg = self.config
        self._pop = popularity_feature(data.counts)
        self._cf = self._cf_items = None
        if cfg.collaborative_weight:
            self._cf = collaborative_vectors(data.matrix, cfg.cf_dim, user_damping=cfg.cf_user_damping, seed=self.seed)
            self._cf_items = impute_cold(
                self._cf, self.item_vectors, data.counts, shrinkage=cfg.cf_cold_shrinkage, neighbours=cfg.cf_cold_neighbours
            )
        self._parts = None
        return self

    def user_parts(self, users: np.ndarray) -> UserParts:
        """Profiles, summaries (encoded) and pooling weights of these users."""
        needs_summary = self.config.profile.text_weight > 0 and self.config.semantic_weight > 0
        return UserParts(self._data, users, self.config.profile, self.encoder, summaries=needs_summary)

    def prepare(self, users: np.ndarray, parts: UserParts | None = None) -> None:
        self._parts = parts or self.user_parts(users)
        self._query, self._keys = self.fused_vectors(self._parts)

    def fused_vectors(self, parts: UserParts) -> tuple[np.ndarray, np.ndarray]:
        """(users, D) query vectors and (items, D) item vectors whose dot product is the fused
        score: the single-vector form a vector store can serve."""
        cfg = self.config
        ids = self._data.item_ids
        blocks_u, blocks_i = [], []
        if cfg.semantic_weight:
            blocks_u.append(cfg.semantic_weight * parts.semantic(dict(zip(ids, self.item_vectors)), cfg.profile.text_weight))
            blocks_i.append(self.item_vectors)
        if self._cf is not None:
            # users pool the items' own cf vectors; candidates are scored with the cold-shrunk ones
            blocks_u.append(cfg.collaborative_weight * parts.pooled(dict(zip(ids, self._cf))))
            blocks_i.append(self._cf_items)
        if cfg.popularity_weight:
            blocks_u.append(np.full((len(parts.users), 1), cfg.popularity_weight, np.float32))
            blocks_i.append(self._pop[:, None])
        return np.hstack(blocks_u).astype(np.float32), np.hstack(blocks_i).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._parts is None or not set(map(int, users)) <= set(map(int, self._parts.users)):
            self.prepare(users)
        return self._query[self._parts.rows(users)] @ self._keys.T


#: semrec's default configuration: the one selected on MovieLens latest-small's leave-last-out
#: validation split (best NDCG@10 with NDCG, coverage@10 >= 2x ALS's and cold-slice recall above
#: every collaborative peer's; see benchmarks/RESULTS-quality.md).
DEFAULT_CONFIG = HybridConfig(
    profile=ProfileConfig(half_life=1.0, text_weight=0.5),
    semantic_weight=1.0,
    collaborative_weight=1.0,
    popularity_weight=-0.1,
    cf_dim=512,
    cf_cold_shrinkage=3.0,
)
