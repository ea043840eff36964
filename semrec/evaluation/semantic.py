"""semrec's own scorer, built from the library's pieces: `UserProfile` fed with the training
events, its text summary encoded by the encoder, `UserProfile.pooling_weights` for the recency
weighting, and `semrec.profiles.user_vector` for the blend. What is evaluated is what the
`Recommender` computes for a user (plus the optional collaborative and popularity terms of
`semrec.evaluation.hybrid`)."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..catalog import Item
from ..profiles import Event, ProfileConfig, UserProfile, user_vector
from .protocol import TrainData

log = logging.getLogger(__name__)


def item_payload(item: Item) -> dict:
    """The fields a profile reads from an item (what the store's payload gives the Recommender)."""
    return {"name": item.name, "category": item.category, "tags": item.tags}


#: Events older than this many half-lives weigh < 3e-8 in every count; `build_profiles` skips them.
NEGLIGIBLE_HALF_LIVES = 25


def build_profiles(data: TrainData, users: np.ndarray, config: ProfileConfig) -> list[UserProfile]:
    """One `UserProfile` per user row, fed the training events in time order (as
    `Recommender.record_many` does). Only each user's last max(max_history, 25 x half_life)
    events are replayed: older ones are outside the history and weigh < 3e-8 in the decayed
    category/tag counts, so the summary and the user vector are the same."""
    payloads = [item_payload(i) for i in data.items]
    wanted = set(int(u) for u in users)
    ev = data.events
    tail = max(config.max_history, int(np.ceil(NEGLIGIBLE_HALF_LIVES * config.half_life)))
    frame = ev[ev["u"].isin(wanted)]
    frame = frame[frame.groupby("u", sort=False).cumcount(ascending=False) < tail]
    profiles: dict[int, UserProfile] = {}
    for u, uid, iid, i, kind, ts, weight in zip(
        frame["u"].to_numpy(), frame["user_id"], frame["item_id"], frame["i"].to_numpy(),
        frame["kind"] if "kind" in frame.columns else ["view"] * len(frame),
        frame["ts"].to_numpy(), frame["weight"] if "weight" in frame.columns else [1.0] * len(frame),
    ):
        profile = profiles.get(u)
        if profile is None:
            profile = profiles[u] = UserProfile(user_id=uid)
        event = Event.model_construct(user_id=uid, item_id=iid, kind=kind, ts=float(ts), weight=float(weight))
        profile.add(event, payloads[i], config)
    return [profiles[int(u)] for u in users]


class UserParts:
    """Per-user pieces of the user vector for one profile configuration: the encoded summaries
    and the pooling weights. Computed once, blended many times (text_weight is a free lever)."""

    def __init__(self, data: TrainData, users: np.ndarray, config: ProfileConfig, encoder, *, summaries: bool = True) -> None:
        self.users = np.asarray(users)
        self.config = config
        self.profiles = build_profiles(data, self.users, config)
        self.weights = [p.pooling_weights(config) for p in self.profiles]
        self.summary_texts = [p.summary(config) for p in self.profiles] if summaries else None
        self.summary_vectors = encoder.encode(self.summary_texts) if summaries else None
        self._row = {int(u): r for r, u in enumerate(self.users)}

    def rows(self, users: Sequence[int]) -> np.ndarray:
        return np.array([self._row[int(u)] for u in users])

    def semantic(self, item_vectors: dict[str, np.ndarray], text_weight: float) -> np.ndarray:
        """(users, dim) user vectors exactly as `semrec.profiles.user_vector` blends them."""
        out = []
        for r, weights in enumerate(self.weights):
            summary = None if self.summary_vectors is None or text_weight == 0 else self.summary_vectors[r]
            pooled_weights = weights if text_weight < 1 else {}
            out.append(user_vector(summary, item_vectors, pooled_weights, text_weight))
        return np.stack(out)

    def pooled(self, item_vectors: dict[str, np.ndarray]) -> np.ndarray:
        """(users, dim) recency-weighted means of the given item vectors (unit length; zero rows
        for users with none of the items)."""
        dim = len(next(iter(item_vectors.values())))
        out = np.zeros((len(self.weights), dim), dtype=np.float32)
        for r, weights in enumerate(self.weights):
            present = {i: w for i, w in weights.items() if i in item_vectors}
            if present:
                out[r] = user_vector(None, item_vectors, present, 0.0)
        return out


class SemanticScorer:
    """Zero-shot semrec: dot product of the blended user vector with the item text vectors."""

    def __init__(self, item_vectors: np.ndarray, encoder, config: ProfileConfig | None = None, name: str = "semrec-semantic") -> None:
        self.item_vectors = item_vectors
        self.encoder = encoder
        self.config = config or ProfileConfig()
        self.name = name

    def fit(self, data: TrainData) -> "SemanticScorer":
        self._data = data
        self._by_id = dict(zip(data.item_ids, self.item_vectors))
        self._parts: UserParts | None = None
        return self

    def prepare(self, users: np.ndarray) -> None:
        self._parts = UserParts(self._data, users, self.config, self.encoder, summaries=self.config.text_weight > 0)
        self._vectors = self._parts.semantic(self._by_id, self.config.text_weight)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._parts is None or not set(map(int, users)) <= set(map(int, self._parts.users)):
            self.prepare(users)
        return self._vectors[self._parts.rows(users)] @ self.item_vectors.T
