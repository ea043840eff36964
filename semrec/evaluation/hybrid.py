"""semrec's scorer: what a `Recommender` with a given `RecommenderConfig` serves, computed offline.

The vectors are built by the functions serving uses, not by copies of them:

- items: `fit_item_parts` and `VectorLayout.items` (what `fit_collaborative` stores);
- users: `profiles.user_vector`, `profiles.pool_vectors` and `VectorLayout.user` (what the
  `ProfileService` stores after a fit);
- queries: `VectorLayout.query` with the configured weights (what `Ranker.recommend` sends).

So the score is the store's one dot product:

    score(u, i) = <text_user(u), text(i)>
                + collaborative.weight            * <cf_user(u), cf(i)>
                + collaborative.popularity_weight * log1p(count(i)) / log1p(max count)

A configuration with `collaborative.dim == 0` is a text-only store: the score is the first term
alone. `text_only(profile)` is that configuration, the one text-only scorer.

Example:
    >>> from semrec import RecommenderConfig
    >>> scorer = SemrecScorer(item_vectors, encoder, RecommenderConfig()).fit(data)   # doctest: +SKIP
    >>> scorer.score(users)                                                           # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from ..collaborative import CollaborativeConfig, VectorLayout, fit_item_parts
from ..errors import ConfigError
from ..profiles import ProfileConfig, pool_vectors, user_vector
from ..recommender import RecommenderConfig
from .protocol import TrainData
from .semantic import UserParts


def text_only(profile: ProfileConfig | None = None) -> RecommenderConfig:
    """The text-only configuration (a store with `collaborative.dim=0`) under `profile`.

    Example:
        >>> text_only(ProfileConfig(text_weight=1.0)).collaborative.dim
        0
    """
    return RecommenderConfig(profile=profile or ProfileConfig(), collaborative=CollaborativeConfig(dim=0))


def label(config: RecommenderConfig) -> str:
    """A short name of the settings the scorer reads, e.g. "semrec(tw=0.25,hl=1,cf=1x512,pop=-0.2,kappa=3)".

    Example:
        >>> label(text_only())
        'semrec(tw=0.25,hl=1)'
    """
    p, c = config.profile, config.collaborative
    parts = [f"tw={p.text_weight:g}", f"hl={p.half_life:g}"]
    if c.dim:
        if c.weight:
            parts.append(f"cf={c.weight:g}x{c.dim}")
        if c.popularity_weight:
            parts.append(f"pop={c.popularity_weight:g}")
        if c.weight and c.cold_shrinkage:
            parts.append(f"kappa={c.cold_shrinkage:g}")
    return "semrec(" + ",".join(parts) + ")"


def fit_items(data: TrainData, text_vectors: np.ndarray, collaborative: CollaborativeConfig, *, seed: int = 0) -> tuple[VectorLayout, np.ndarray]:
    """The store's layout and its (items, item_dim) item vectors after `fit_collaborative` on
    `data`'s interactions (text only when `collaborative.dim == 0`)."""
    text_vectors = np.asarray(text_vectors, np.float32)
    layout = VectorLayout(text=text_vectors.shape[1], collaborative=collaborative.dim)
    if not layout.hybrid:
        return layout, layout.items(text_vectors)
    _, cf, pop = fit_item_parts(data.matrix, text_vectors, collaborative, seed=seed)
    return layout, layout.items(text_vectors, cf, pop)


def user_vectors(
    parts: UserParts, summaries: np.ndarray | None, layout: VectorLayout, item_ids: np.ndarray, items: np.ndarray, text_weight: float
) -> np.ndarray:
    """(users, user_dim) stored user vectors, as the `ProfileService` writes them after a fit:
    the text part blends the summary with the pooled history (`user_vector`), the collaborative
    part pools the history's stored cf vectors (`pool_vectors`). `summaries` may be None when
    `text_weight == 0` (the summary then has no weight)."""
    text = dict(zip(item_ids, layout.text_part(items)))
    cf = dict(zip(item_ids, layout.cf_part(items))) if layout.hybrid else {}
    rows = []
    for r, weights in enumerate(parts.weights):
        summary = None if summaries is None or text_weight == 0 else summaries[r]
        text_vector = user_vector(summary, text, weights, text_weight)
        rows.append(layout.user(text_vector, pool_vectors(cf, weights) if layout.hybrid else None))
    return np.stack(rows).astype(np.float32)


def query_vectors(layout: VectorLayout, users: np.ndarray, *, weight: float, popularity_weight: float) -> np.ndarray:
    """(users, item_dim) queries from stored user vectors, as `Ranker.recommend` makes them."""
    return np.stack([
        layout.query(layout.text_part(u), layout.cf_part(u), weight=weight, popularity_weight=popularity_weight) for u in users
    ])


class SemrecScorer:
    """The recommendations a `Recommender` with `config` serves, as an evaluation `Scorer`.

    Args:
        item_vectors: (items, dim) text vectors of `data.items`, in the same order.
        encoder: encodes the users' summaries.
        config: the `RecommenderConfig` (None: the default, what semrec ships).
        parts: users' profiles built once (e.g. for many encoders); their `ProfileConfig` must
            equal `config.profile` except for `text_weight`.
    """

    def __init__(
        self, item_vectors: np.ndarray, encoder, config: RecommenderConfig | None = None, *, seed: int = 0,
        name: str | None = None, parts: UserParts | None = None,
    ) -> None:
        self.item_vectors = item_vectors
        self.encoder = encoder
        self.config = config or RecommenderConfig()
        self.seed = seed
        self.name = name or label(self.config)
        if parts is not None and profile_key(parts.config) != profile_key(self.config.profile):
            raise ConfigError(
                f"parts were built with {parts.config!r}, but the scorer's profile is {self.config.profile!r}; "
                "build UserParts with config.profile (only text_weight may differ)."
            )
        self._given = parts
        self._parts = parts
        self._query: np.ndarray | None = None

    def fit(self, data: TrainData) -> "SemrecScorer":
        """Fit the item vectors on `data` (what `fit_collaborative` does on the store)."""
        self._data = data
        self.layout, self.items = fit_items(data, self.item_vectors, self.config.collaborative, seed=self.seed)
        self._parts, self._query = self._given, None
        return self

    def stored_user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(len(users), user_dim) the vectors the store would hold for these user rows."""
        self.prepare(users)
        return self._stored[self._parts.rows(users)]

    def prepare(self, users: np.ndarray) -> None:
        """Build the users' profiles, summaries and query vectors (once for all `users`)."""
        if self._query is not None and self._covers(users):
            return
        if self._parts is None or not self._covers(users):
            self._parts = UserParts(self._data, users, self.config.profile)
        profile, cf = self.config.profile, self.config.collaborative
        summaries = self._parts.summaries(self.encoder) if profile.text_weight > 0 else None
        self._stored = user_vectors(self._parts, summaries, self.layout, self._data.item_ids, self.items, profile.text_weight)
        self._query = query_vectors(self.layout, self._stored, weight=cf.weight, popularity_weight=cf.popularity_weight)

    def score(self, users: np.ndarray) -> np.ndarray:
        self.prepare(users)
        return self._query[self._parts.rows(users)] @ self.items.T

    def _covers(self, users: np.ndarray) -> bool:
        return self._parts is not None and set(map(int, users)) <= self._parts.user_set


def profile_key(profile: ProfileConfig) -> str:
    """The profile settings that change the profiles themselves (`text_weight` only blends the
    summary with the pooled history), as a key: equal keys build the same `UserParts`."""
    return profile.model_dump_json(exclude={"text_weight"})
