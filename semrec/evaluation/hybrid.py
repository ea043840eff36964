"""semrec's full scorer: the semantic user vector, plus a collaborative vector per item, plus a
popularity prior, fused as one weighted dot product.

    score(u, i) = semantic_weight      * <user_vector(u), text_vector(i)>
                + collaborative_weight * <pooled_cf(u),   cf_vector(i)>
                + popularity_weight    * log1p(count(i)) / log1p(max count)

`cf_vector(i)` is row i of V*S from a truncated SVD of the user x item matrix whose columns are
scaled to unit length (so <cf_i, cf_j> approximates the co-occurrence cosine of ItemKNN), and
`pooled_cf(u)` is the unit-length, recency-weighted mean of the user's history items' stored cf
vectors (shrunk towards their text neighbours' when they have few interactions, see
`impute_cold`), with the same `UserProfile.pooling_weights` as the semantic vector. The three terms are one dot
product of concatenated vectors, so the fused ranking is a single nearest-neighbour query:
item = [text_vector, cf_vector, pop], user = [w_sem * user_vector, w_cf * pooled_cf, w_pop].
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..collaborative import CollaborativeConfig, fit_item_parts, popularity_feature
from ..collaborative import collaborative_vectors, impute_cold  # noqa: F401  (re-exported)
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

    def collaborative(self) -> CollaborativeConfig:
        """The same settings as a `Recommender`'s `CollaborativeConfig`."""
        return CollaborativeConfig(
            dim=self.cf_dim, weight=self.collaborative_weight, popularity_weight=self.popularity_weight,
            cold_shrinkage=self.cf_cold_shrinkage, cold_neighbours=self.cf_cold_neighbours, user_damping=self.cf_user_damping,
        )

    @classmethod
    def from_recommender(cls, profile: ProfileConfig, collaborative: CollaborativeConfig) -> "HybridConfig":
        """The configuration that scores what a `Recommender` with these settings serves."""
        return cls(
            profile=profile, collaborative_weight=collaborative.weight if collaborative.dim else 0.0,
            popularity_weight=collaborative.popularity_weight if collaborative.dim else 0.0,
            cf_dim=max(collaborative.dim, 1), cf_user_damping=collaborative.user_damping,
            cf_cold_shrinkage=collaborative.cold_shrinkage, cf_cold_neighbours=collaborative.cold_neighbours,
        )

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
            self._cf, self._cf_items, self._pop = fit_item_parts(data.matrix, self.item_vectors, cfg.collaborative(), seed=self.seed)
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
            # users pool the stored (cold-shrunk) cf vectors, as the Recommender does
            blocks_u.append(cfg.collaborative_weight * parts.pooled(dict(zip(ids, self._cf_items))))
            blocks_i.append(self._cf_items)
        if cfg.popularity_weight:
            blocks_u.append(np.full((len(parts.users), 1), cfg.popularity_weight, np.float32))
            blocks_i.append(self._pop[:, None])
        return np.hstack(blocks_u).astype(np.float32), np.hstack(blocks_i).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._parts is None or not set(map(int, users)) <= set(map(int, self._parts.users)):
            self.prepare(users)
        return self._query[self._parts.rows(users)] @ self._keys.T


#: What a `Recommender` with the default `RecommenderConfig` serves (the profile and
#: collaborative defaults were selected on MovieLens latest-small's leave-last-out validation
#: split; see benchmarks/RESULTS.md section 2).
DEFAULT_CONFIG = HybridConfig.from_recommender(ProfileConfig(), CollaborativeConfig())
