"""Users offline as the `Recommender` keeps them: a `UserProfile` fed the training events in time
order, its pooling weights and its summary text (`semrec.evaluation.hybrid` turns them into
vectors with the functions serving uses)."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..catalog import Item
from ..profiles import Event, ProfileConfig, UserProfile
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
    """Per-user pieces of the user vector for one profile configuration: the profiles (fed the
    training events), their pooling weights and summary texts. Built once; the summaries are
    encoded per encoder (`summaries`), and `text_weight` is free (it only blends)."""

    def __init__(self, data: TrainData, users: np.ndarray, config: ProfileConfig) -> None:
        self.users = np.asarray(users)
        self.config = config
        self.profiles = build_profiles(data, self.users, config)
        self.weights = [p.pooling_weights(config) for p in self.profiles]
        self.summary_texts = [p.summary(config) for p in self.profiles]
        self._row = {int(u): r for r, u in enumerate(self.users)}
        self.user_set = set(self._row)

    def rows(self, users: Sequence[int]) -> np.ndarray:
        return np.array([self._row[int(u)] for u in users], dtype=np.int64)

    def summaries(self, encoder) -> np.ndarray:
        """(users, dim) the encoder's vectors of the summary texts."""
        return encoder.encode(self.summary_texts)
