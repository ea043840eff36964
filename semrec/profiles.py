"""Users in real time: events, the bounded profile, its text summary, and the user vector."""

from __future__ import annotations

import hashlib
import math
import numbers
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .catalog import Reject, canonical_id, short_repr
from .encoders import l2_normalize
from .errors import ConfigError

#: How much each kind of event counts (times the event's own weight); other kinds count 1.
KIND_WEIGHTS = {"view": 1.0, "click": 1.0, "rating": 1.0, "like": 2.0, "cart": 2.0, "purchase": 3.0}
#: Kinds that say "not this", and how strongly (times the event's own weight) they push the item's
#: neighbours down for the user; the item itself is never recommended to them again.
NEGATIVE_KINDS = {"dislike": 1.0, "not_interested": 1.0, "skip": 0.3}


class ProfileConfig(BaseModel):
    """How a profile is kept and turned into a vector.

    Args:
        max_history: recent events kept per user (older ones still count in `seen` and counts).
        summary_recent: items named in the summary's "Recently:" part.
        summary_categories / summary_tags: how many favourites the summary names.
        half_life: events after which an item's weight (in the pooled vector and in the
            category/tag counts) halves; small values follow new interests quickly.
        text_weight: the user vector is `text_weight` x summary vector + (1 - text_weight) x
            pooled item vectors (both unit length).
    """

    model_config = ConfigDict(extra="forbid")

    max_history: int = Field(50, ge=1)
    summary_recent: int = Field(10, ge=1)
    summary_categories: int = Field(3, ge=0)
    summary_tags: int = Field(5, ge=0)
    max_counts: int = Field(100, ge=1)
    half_life: float = Field(1.0, gt=0)
    text_weight: float = Field(0.25, ge=0, le=1)
    kind_weights: dict[str, float] = Field(default_factory=lambda: dict(KIND_WEIGHTS))
    negative_kinds: dict[str, float] = Field(default_factory=lambda: dict(NEGATIVE_KINDS))
    #: How far the pooled vector of the user's disliked items is subtracted from their query (0:
    #: the disliked items and their near-duplicates are only excluded). 0 by default: on
    #: MovieLens, low ratings treated as dislikes cost R@10 at 0.3 and nothing measurable at 0
    #: (benchmarks/RESULTS.md section 8).
    negative_weight: float = Field(0.0, ge=0, le=2)
    #: The same for the negative examples given to one call (`recommend(..., negatives=[...])`).
    request_negative_weight: float = Field(0.3, ge=0, le=2)
    max_negatives: int = Field(200, ge=1)
    #: Items at least this similar by text to a disliked item (cosine) are near-duplicates of
    #: it and left out too (1: only the item itself).
    near_duplicate: float = Field(0.9, gt=0, le=1)


class Event(BaseModel):
    """One user action on one item."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    item_id: str
    kind: str = "view"
    ts: float
    weight: float = 1.0


class HistoryEntry(BaseModel):
    """An event with the item fields the summary needs (so summaries need no lookups)."""

    item_id: str
    name: str
    category: str | None = None
    tags: list[str] = Field(default_factory=list)
    kind: str
    ts: float
    weight: float


class UserProfile(BaseModel):
    """What semrec keeps about a user: recent history, everything seen, favourite categories/tags."""

    user_id: str
    interests: list[str] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    category_counts: dict[str, float] = Field(default_factory=dict)
    tag_counts: dict[str, float] = Field(default_factory=dict)
    events: int = 0
    #: Items the user said "not this" about, with the strength of it (newest last): excluded
    #: from their recommendations, their neighbours pushed down.
    negatives: dict[str, float] = Field(default_factory=dict)
    #: A short key of every event applied (see `event_key`): re-sent events are recognised over
    #: the whole history, not just the recent part kept in `history`.
    event_keys: list[str] = Field(default_factory=list)
    _seen_ids: set[str] = PrivateAttr(default_factory=set)
    _keys: set[str] = PrivateAttr(default_factory=set)

    def model_post_init(self, context: Any) -> None:
        self._seen_ids = set(self.seen)
        if not self.event_keys and self.history:  # a profile stored before keys were kept
            self.event_keys = list(dict.fromkeys(event_key(e.item_id, e.kind, e.ts) for e in self.history))
        self._keys = set(self.event_keys)

    def add(self, event: Event, item: dict[str, Any], config: ProfileConfig) -> bool:
        """Apply one event (item = the item's stored payload). Returns False for an event already
        applied (same item, kind and time), however long ago."""
        key = event_key(event.item_id, event.kind, event.ts)
        if key in self._keys:
            return False
        self._keys.add(key)
        self.event_keys.append(key)
        self.events += 1
        if event.kind in config.negative_kinds:
            strength = config.negative_kinds[event.kind] * event.weight
            self.negatives[event.item_id] = self.negatives.pop(event.item_id, 0.0) + strength
            for stale in list(self.negatives)[: -config.max_negatives]:
                del self.negatives[stale]
            return True
        self.negatives.pop(event.item_id, None)  # a positive event later: the user changed their mind
        strength = config.kind_weights.get(event.kind, 1.0) * event.weight
        entry = HistoryEntry(
            item_id=event.item_id,
            name=item.get("name", event.item_id),
            category=item.get("category"),
            tags=list(item.get("tags", [])),
            kind=event.kind,
            ts=event.ts,
            weight=strength,
        )
        self.history.append(entry)
        if len(self.history) > 1 and self.history[-2].ts > event.ts:
            self.history.sort(key=lambda e: e.ts)
        del self.history[: -config.max_history]
        if event.item_id not in self._seen_ids:
            self.seen.append(event.item_id)
            self._seen_ids.add(event.item_id)
        decay = 0.5 ** (1 / config.half_life)
        _bump(self.category_counts, [entry.category] if entry.category else [], strength, decay, config.max_counts)
        _bump(self.tag_counts, entry.tags, strength, decay, config.max_counts)
        return True

    def summary(self, config: ProfileConfig) -> str:
        """The history as text, e.g. "Recently: A; B. Favourite categories: X. Frequent tags: t."."""
        parts = []
        recent: list[str] = []
        for entry in reversed(self.history):
            if entry.name not in recent:
                recent.append(entry.name)
            if len(recent) == config.summary_recent:
                break
        if recent:
            parts.append("Recently: " + "; ".join(recent) + ".")
        categories = _top(self.category_counts, config.summary_categories)
        if categories:
            parts.append("Favourite categories: " + ", ".join(categories) + ".")
        tags = _top(self.tag_counts, config.summary_tags)
        if tags:
            parts.append("Frequent tags: " + ", ".join(tags) + ".")
        if self.interests:
            parts.append("Interests: " + ", ".join(self.interests) + ".")
        return " ".join(parts)

    def pooling_weights(self, config: ProfileConfig) -> dict[str, float]:
        """Recency-weighted strength per history item: newest event = full weight, halving every
        `half_life` events."""
        weights: dict[str, float] = {}
        newest = len(self.history) - 1
        for position, entry in enumerate(self.history):
            decay = 0.5 ** ((newest - position) / config.half_life)
            weights[entry.item_id] = weights.get(entry.item_id, 0.0) + entry.weight * decay
        return weights


def event_key(item_id: str, kind: str, ts: float) -> str:
    """A 12-character key of an event within one user's history (item, kind, time to the
    microsecond): what makes re-sending the same events harmless.

    Example:
        >>> event_key("el-001", "view", 1.0) == event_key("el-001", "view", 1.0000000001)
        True
    """
    text = f"{item_id}\x1f{kind}\x1f{round(float(ts), 6)!r}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def pool_vectors(vectors: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray | None:
    """Unit-length weighted mean of the vectors of the weighted ids present (None if none is).

    Example:
        >>> pool_vectors({"a": np.array([1.0, 0]), "b": np.array([0, 1.0])}, {"a": 1, "b": 1, "c": 5}).round(3).tolist()
        [0.707, 0.707]
    """
    present = [i for i, w in weights.items() if i in vectors and w > 0]
    if not present:
        return None
    # the weighted sum: the mean differs from it only in length, which normalising removes
    return l2_normalize(np.array([weights[i] for i in present]) @ np.stack([vectors[i] for i in present]))


def user_vector(
    summary_vector: np.ndarray | None,
    item_vectors: dict[str, np.ndarray],
    weights: dict[str, float],
    text_weight: float,
) -> np.ndarray:
    """Blend the summary's vector with the recency-weighted mean of the history's item vectors.

    Example:
        >>> v = user_vector(np.array([1.0, 0]), {"a": np.array([0, 1.0])}, {"a": 1.0}, 0.5)
        >>> np.round(v, 3).tolist()
        [0.707, 0.707]
    """
    pooled = pool_vectors(item_vectors, weights)
    if summary_vector is None and pooled is None:
        raise ConfigError("A user vector needs a history or interests; this profile has neither.")
    if pooled is None:
        return l2_normalize(summary_vector)
    if summary_vector is None:
        return pooled
    return l2_normalize(text_weight * l2_normalize(summary_vector) + (1 - text_weight) * pooled)


#: How far after now an event's time may lie (clock skew between machines). Later times are
#: refused: an event dated in 2999 would stay a user's "most recent" one for ever.
FUTURE_TOLERANCE_S = 86_400.0
#: The earliest event time accepted, 1900-01-01 UTC (1900-1970 is negative epoch seconds).
#: Earlier values are taken for mistakes: a sentinel such as -1e10, or the wrong unit.
MIN_TS = -2_208_988_800.0
#: The largest event weight accepted (the kind's weight then multiplies it).
MAX_WEIGHT = 1e6


def to_timestamp(ts: Any, *, now: float | None = None) -> float:
    """Seconds since the epoch (UTC) from None, a number, a datetime or an ISO-8601 string.

    The rule: None means now (`now`, by default the clock). NaN, NaT, inf and values that are
    not times raise `ConfigError`: a missing time is refused, never silently taken for now. So
    do times more than `FUTURE_TOLERANCE_S` (one day) after now, and times before `MIN_TS`
    (1900-01-01); 1900-1970 is accepted. Naive datetimes and ISO text without a zone are UTC.

    Example:
        >>> to_timestamp("2026-01-01T00:00:00Z")
        1767225600.0
    """
    current = time.time() if now is None else float(now)
    if ts is None:
        return current
    expected = "expected epoch seconds, a datetime or ISO-8601 text such as '2026-11-28T10:00:00Z'"
    if isinstance(ts, (bool, np.bool_)):
        raise ConfigError(f"ts {short_repr(ts)} is not a time; {expected}.")
    if isinstance(ts, (numbers.Real, Decimal)):
        try:
            value = float(ts)
        except (OverflowError, ValueError):
            value = math.inf
    else:
        try:
            stamp = pd.Timestamp(ts)
        except (ValueError, TypeError, OverflowError):
            raise ConfigError(f"ts {short_repr(ts)} is not a time; {expected}.") from None
        if stamp is pd.NaT:
            value = math.nan
        else:
            value = (stamp.tz_localize(timezone.utc) if stamp.tzinfo is None else stamp).timestamp()
    if not math.isfinite(value):
        raise ConfigError(
            f"ts {short_repr(ts)} is not a finite time; {expected}. A missing time is not taken for now: "
            "pass ts=None for the current time."
        )
    if value > current + FUTURE_TOLERANCE_S:
        try:
            shown = f" ({datetime.fromtimestamp(value, timezone.utc):%Y-%m-%d %H:%M} UTC)"
        except (OverflowError, ValueError, OSError):
            shown = ""
        unit = isinstance(ts, (numbers.Real, Decimal)) and 1e11 <= value and value / 1000 <= current + FUTURE_TOLERANCE_S
        hint = "; it looks like milliseconds: divide by 1000" if unit else ""
        raise ConfigError(
            f"ts {short_repr(ts)}{shown} is in the future: event times may lie at most "
            f"{FUTURE_TOLERANCE_S:g} seconds (one day) after now{hint}. Fix the clock or the "
            "unit, or pass ts=None for now."
        )
    if value < MIN_TS:
        raise ConfigError(
            f"ts {short_repr(ts)} is before 1900-01-01 (epoch {MIN_TS:g}); {expected}. A sentinel for "
            "'unknown' is not a time: pass ts=None for now."
        )
    return value


def make_event(
    user_id: Any, item_id: Any, kind: Any = "view", ts: Any = None, weight: Any = 1.0, *, now: float | None = None
) -> Event:
    """A validated `Event`; bad values raise `ConfigError` naming the value and the fix.

    `ts` follows `to_timestamp`'s rule (None is now; NaN, inf, more than a day ahead and
    before 1900 are refused); `weight` must be a finite number from 0 to `MAX_WEIGHT` (1e6);
    ids and kind must be valid Unicode text.

    Example:
        >>> make_event("u1", 42, "purchase", ts=1_700_000_000).item_id
        '42'
    """
    if not isinstance(kind, str) or not kind.strip():
        raise ConfigError(f"kind {short_repr(kind)} is not valid; expected a word such as 'view' or 'purchase'.")
    if any("\ud800" <= ch <= "\udfff" for ch in kind):
        raise ConfigError(
            f"kind {short_repr(kind)} is not valid Unicode text (it has a lone surrogate); expected a word "
            "such as 'view' or 'purchase'."
        )
    number, shown = math.nan, short_repr(weight)
    if not isinstance(weight, (bool, np.bool_)):
        try:
            number = float(weight)
            shown = repr(number)
        except (TypeError, ValueError, OverflowError):
            pass
    if not (math.isfinite(number) and 0 <= number <= MAX_WEIGHT):
        raise ConfigError(
            f"weight {shown} is not valid; expected a finite number >= 0 and <= {MAX_WEIGHT:g}, "
            "e.g. weight=1.0 (or a rating such as 4.5)."
        )
    return Event(
        user_id=canonical_id(user_id, "user_id"),
        item_id=canonical_id(item_id, "item_id"),
        kind=kind.strip(),
        ts=to_timestamp(ts, now=now),
        weight=number,
    )


def events_from_frame(frame: pd.DataFrame, rejects: list[Reject] | None = None) -> list[Event]:
    """Validated events from a DataFrame with user_id, item_id and optional kind, ts, weight.

    Strict by default: the first bad row raises `ConfigError` naming the row. With a `rejects`
    list, each bad row is appended to it as a `Reject` (row position, reason, item_id and the
    row's values) and skipped, and the good rows come back in their order. A missing ts column
    means now for every row; a missing value in it (NaN) is a bad row (see `to_timestamp`).

    Example:
        >>> bad = []
        >>> frame = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "ts": [1.0, float("inf")]})
        >>> [e.item_id for e in events_from_frame(frame, rejects=bad)], [r.row for r in bad]
        (['a'], [1])
    """
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"Events table has no {missing} column(s) (columns: {', '.join(map(str, frame.columns))}); "
            "expected user_id, item_id and optionally kind, ts, weight."
        )
    now = time.time()
    kinds = frame["kind"] if "kind" in frame.columns else ["view"] * len(frame)
    stamps = frame["ts"] if "ts" in frame.columns else [None] * len(frame)
    weights = frame["weight"] if "weight" in frame.columns else [1.0] * len(frame)
    events = []
    for row, (user, item, kind, ts, weight) in enumerate(
        zip(frame["user_id"], frame["item_id"], kinds, stamps, weights)
    ):
        try:
            events.append(make_event(user, item, kind, ts, weight, now=now))
        except ConfigError as exc:
            if rejects is None:
                raise ConfigError(f"Events row {row}: {exc}") from None
            data = {"user_id": user, "item_id": item, "kind": kind, "ts": ts, "weight": weight}
            rejects.append(Reject(row, str(exc), item, data))
    return events


def _bump(counts: dict[str, float], keys: Iterable[str], amount: float, decay: float, limit: int) -> None:
    """Decay every count (recent events weigh more), add `amount` to `keys`, keep the top `limit`."""
    for key in counts:
        counts[key] *= decay
    for key in keys:
        counts[key] = counts.get(key, 0.0) + amount
    if len(counts) > limit:
        for key in sorted(counts, key=counts.__getitem__)[: len(counts) - limit]:
            del counts[key]


def _top(counts: dict[str, float], n: int) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
