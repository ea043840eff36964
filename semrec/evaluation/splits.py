"""Splits that respect time: chronological leave-last-out and a global temporal split.

Each split yields a validation `Split` (for tuning) and a test `Split`. A `Split` holds the
training events, the held-out targets, and the tag cutoff: the time before which tags may be used
in item text (per user for leave-last-out, where each user's split time is their first held-out
event; one global time for the temporal split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError


@dataclass
class Split:
    """Training events, held-out (user_id, item_id) targets, and the tag cutoff."""

    name: str
    train: pd.DataFrame
    targets: pd.DataFrame
    tag_cutoff: float | Mapping[str, float]

    def __repr__(self) -> str:
        return f"Split({self.name!r}, train={len(self.train)}, targets={len(self.targets)}, users={self.targets['user_id'].nunique()})"


def chronological(events: pd.DataFrame) -> pd.DataFrame:
    """Events sorted by user, then time; ties keep the input order (deterministic)."""
    return events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)


def leave_last_out(events: pd.DataFrame, *, min_events: int = 3) -> tuple[Split, Split]:
    """Per user: last event = test target, second-to-last = validation target.

    Validation trains on everything but each user's last two events; test trains on everything
    but the last one. Users with fewer than `min_events` events are training-only. Each user's
    tag cutoff is the time of their first held-out event.

    Example:
        >>> ev = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "ts": [1.0, 2, 3]})
        >>> val, test = leave_last_out(ev)
        >>> val.targets["item_id"].tolist(), test.targets["item_id"].tolist()
        (['b'], ['c'])
    """
    if min_events < 3:
        raise ConfigError(f"min_events={min_events} is too small; leave-last-out needs >= 3 (train, validation, test).")
    ordered = chronological(events)
    size = ordered.groupby("user_id", sort=False)["item_id"].transform("size")
    position_from_end = size - 1 - ordered.groupby("user_id", sort=False).cumcount()
    eligible = size >= min_events
    splits = []
    for name, held in (("validation", 1), ("test", 0)):
        is_target = eligible & (position_from_end == held)
        is_train = ~eligible | (position_from_end > held)
        targets = ordered.loc[is_target, ["user_id", "item_id", "ts"]].reset_index(drop=True)
        cutoff = dict(zip(targets["user_id"], targets["ts"].astype(float)))
        splits.append(Split(f"leave-last-out/{name}", ordered[is_train].reset_index(drop=True), targets, cutoff))
    return splits[0], splits[1]


def temporal_split(events: pd.DataFrame, *, test_fraction: float = 0.1, validation_fraction: float = 0.1) -> tuple[Split, Split]:
    """One global time cut: the last `test_fraction` of events (by time) is the test period, the
    `validation_fraction` before it the validation period.

    Targets are the distinct items a user met in the held-out period that are not in their
    training history; only users with training history are evaluated. Validation trains on
    events before the validation period only.
    """
    for label, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not 0 < value < 1:
            raise ConfigError(f"{label}={value!r} is not valid; expected a fraction between 0 and 1, e.g. 0.1.")
    if test_fraction + validation_fraction >= 1:
        raise ConfigError("test_fraction + validation_fraction must be < 1 to leave training data.")
    ordered = chronological(events)
    ts = np.sort(ordered["ts"].to_numpy())
    t_test = float(ts[int(len(ts) * (1 - test_fraction))])
    t_val = float(ts[int(len(ts) * (1 - test_fraction - validation_fraction))])
    val = _period(ordered, t_val, t_test, "temporal/validation")
    test = _period(ordered, t_test, np.inf, "temporal/test")
    return val, test


def _period(ordered: pd.DataFrame, start: float, end: float, name: str) -> Split:
    train = ordered[ordered["ts"] < start]
    held = ordered[(ordered["ts"] >= start) & (ordered["ts"] < end)]
    held = held[held["user_id"].isin(set(train["user_id"]))]
    seen = set(zip(train["user_id"], train["item_id"]))
    fresh = [pair not in seen for pair in zip(held["user_id"], held["item_id"])]
    targets = held[fresh].drop_duplicates(["user_id", "item_id"])[["user_id", "item_id", "ts"]]
    return Split(name, train.reset_index(drop=True), targets.reset_index(drop=True), start)
