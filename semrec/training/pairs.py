"""Training pairs from interactions, drawn from a split's training events only.

A history pair is (the library's text summary of a user's history up to an event, the text of
the item at that event): exactly the two texts the recommender compares at query time, because
the summary comes from `UserProfile.summary` under the same `ProfileConfig`. An item pair is
(the text of an item the user met shortly before, the text of the item at the event): a
co-occurrence signal for the pooled part of the user vector.

Example:
    >>> import pandas as pd
    >>> from semrec.catalog import Item
    >>> items = [Item(i, f"Movie {i}", None, ["drama"], text=f"Movie {i}. Tags: drama.") for i in "abc"]
    >>> ev = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "ts": [1.0, 2, 3]})
    >>> [(p.anchor, p.positive) for p in history_pairs(ev, items)][:1]
    [('Recently: Movie a. Frequent tags: drama.', 'Movie b. Tags: drama.')]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..catalog import Item
from ..errors import ConfigError
from ..profiles import Event, ProfileConfig, UserProfile


@dataclass(frozen=True)
class Pair:
    """One training example: `anchor` should score `positive` above every other item.

    `user_id`, `item_id` and `ts` name the event the positive comes from (so a test can check
    that no held-out event is used); `kind` is "history" or "item".
    """

    anchor: str
    positive: str
    user_id: str
    item_id: str
    ts: float
    kind: str = "history"


def _payload(item: Item) -> dict:
    # the fields a profile reads from the stored payload (as semrec.evaluation.semantic.item_payload)
    return {"name": item.name, "category": item.category, "tags": item.tags}


def _ordered(events: pd.DataFrame, known: dict[str, Item]) -> pd.DataFrame:
    missing = [c for c in ("user_id", "item_id", "ts") if c not in events.columns]
    if missing:
        raise ConfigError(
            f"The events table has no {missing} column(s) (columns: {', '.join(map(str, events.columns))}); "
            "expected user_id, item_id, ts and optionally kind, weight."
        )
    unknown = ~events["item_id"].astype(str).isin(known)
    if unknown.any():
        raise ConfigError(
            f"{int(unknown.sum())} training event(s) name items not in the catalog, e.g. "
            f"{events.loc[unknown, 'item_id'].head(3).tolist()}; fix the catalog or drop those events."
        )
    events = events.assign(user_id=events["user_id"].astype(str), item_id=events["item_id"].astype(str))
    return events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)


def _walk(events: pd.DataFrame, items: Sequence[Item], config: ProfileConfig) -> Iterator[tuple[UserProfile, Event, Item, list[str]]]:
    """Per event, in time order per user: (profile before the event, the event, its item, items
    seen before it); the profile is updated after yielding."""
    known = {i.item_id: i for i in items}
    frame = _ordered(events, known)
    kinds = frame["kind"] if "kind" in frame.columns else ["view"] * len(frame)
    weights = frame["weight"] if "weight" in frame.columns else [1.0] * len(frame)
    profile: UserProfile | None = None
    history: list[str] = []
    for uid, iid, kind, ts, weight in zip(frame["user_id"].astype(str), frame["item_id"].astype(str), kinds, frame["ts"], weights):
        if profile is None or profile.user_id != uid:
            profile, history = UserProfile(user_id=uid), []
        item = known[iid]
        event = Event.model_construct(user_id=uid, item_id=iid, kind=str(kind), ts=float(ts), weight=float(weight))
        yield profile, event, item, history
        profile.add(event, _payload(item), config)
        history.append(iid)


def history_pairs(
    events: pd.DataFrame,
    items: Sequence[Item],
    config: ProfileConfig | None = None,
    *,
    max_per_user: int | None = None,
    limit: int | None = None,
    item_pairs: bool = False,
    history: bool = True,
    window: int = 5,
    seed: int = 0,
) -> list[Pair]:
    """Pairs from training events (never pass held-out events here: pass `split.train`).

    Args:
        events: user_id, item_id, ts and optional kind, weight (ids as strings).
        items: the catalog (`Item.text` is the positive; name, category and tags feed the summary).
        config: the `ProfileConfig` the recommender uses (summary length, half-life, ...).
        max_per_user: keep only each user's last `max_per_user` events (None: every event).
            Heavy users otherwise dominate; the most recent behaviour is the most predictive.
        limit: keep at most this many events, drawn at random (seeded) from the eligible ones,
            before any summary is written (summaries are the slow part).
        item_pairs: also yield one item pair per kept event: (an item the user met among the
            `window` events before, drawn at random, the event's item).
        history: False gives item pairs only (no summaries are written: fast).
        seed: for the item-pair draws.

    Returns:
        Pairs in event order (shuffle before batching). The first event of a user has no history
        and gives no pair.
    """
    config = config or ProfileConfig()
    if max_per_user is not None and max_per_user < 1:
        raise ConfigError(f"max_per_user={max_per_user!r} is not valid; expected None or an integer >= 1.")
    rng = np.random.default_rng(seed)
    frame = _ordered(events, {i.item_id: i for i in items})
    position = frame.groupby("user_id", sort=False).cumcount().to_numpy()
    from_end = frame.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy() - 1 - position
    eligible = position >= 1
    if max_per_user is not None:
        eligible &= from_end < max_per_user
    chosen = np.flatnonzero(eligible)
    if limit is not None and limit < len(chosen):
        chosen = np.sort(rng.choice(chosen, size=limit, replace=False))
    wanted = np.zeros(len(frame), dtype=bool)
    wanted[chosen] = True
    by_id = {i.item_id: i for i in items}
    out: list[Pair] = []
    for row, (profile, event, item, before) in enumerate(_walk(frame, items, config)):
        if not wanted[row]:
            continue
        if history:
            out.append(Pair(profile.summary(config), item.text, event.user_id, event.item_id, event.ts, "history"))
        if item_pairs:
            recent = [i for i in before[-window:] if i != event.item_id]
            if recent:
                other = by_id[recent[int(rng.integers(len(recent)))]]
                out.append(Pair(other.text, item.text, event.user_id, event.item_id, event.ts, "item"))
    return out


def no_duplicate_batches(pairs: Sequence[Pair], batch_size: int, seed: int = 0) -> Iterator[list[int]]:
    """Shuffled batches (indices into `pairs`) in which no text and no positive item occurs
    twice, so no in-batch negative is a copy of a positive. A pair that clashes waits for a
    later batch; the last, smaller batch is dropped if it has fewer than 2 pairs. Endless
    (epoch after epoch, reshuffled).

    Example:
        >>> ps = [Pair("a", "x", "u", "1", 0), Pair("b", "x", "u", "1", 1), Pair("c", "y", "v", "2", 0)]
        >>> batches = no_duplicate_batches(ps, 2)
        >>> all(len({ps[i].item_id for i in b}) == len(b) for b in [next(batches) for _ in range(4)])
        True
    """
    if batch_size < 2:
        raise ConfigError(f"batch_size={batch_size} is too small; in-batch negatives need >= 2.")
    if len(pairs) < 2:
        raise ConfigError(f"{len(pairs)} training pair(s) is too few; need at least 2 (more users or events).")
    rng = np.random.default_rng(seed)
    while True:
        yielded = False
        remaining = dict.fromkeys(int(i) for i in rng.permutation(len(pairs)))
        while len(remaining) >= 2:
            batch: list[int] = []
            texts: set[str] = set()
            ids: set[str] = set()
            for index in remaining:
                pair = pairs[index]
                if pair.item_id in ids or pair.anchor in texts or pair.positive in texts:
                    continue
                batch.append(index)
                texts.update((pair.anchor, pair.positive))
                ids.add(pair.item_id)
                if len(batch) == batch_size:
                    break
            if len(batch) < 2:
                break
            for index in batch:
                del remaining[index]
            yielded = True
            yield batch
        if not yielded:
            raise ConfigError(
                "No batch of 2 distinct positives can be formed: every pair has the same item. "
                "Fine-tuning needs interactions with at least 2 different items."
            )


def log_frequency(pairs: Sequence[Pair]) -> np.ndarray:
    """log of each pair's positive item's share of all positives (add-one smoothed): the logQ
    correction for in-batch negatives. In-batch negatives are drawn as often as items are
    interacted with, so an uncorrected loss learns to push popular items down; subtracting
    log q(item) from each logit makes the sampled softmax estimate the full one (Yi et al.,
    RecSys 2019, "Sampling-bias-corrected neural modeling").

    Example:
        >>> ps = [Pair("a", "x", "u", "1", 0), Pair("b", "x", "u", "1", 1), Pair("c", "y", "v", "2", 0)]
        >>> np.round(np.exp(log_frequency(ps)), 2).tolist()
        [0.6, 0.6, 0.4]
    """
    ids = [p.item_id for p in pairs]
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    total = len(ids) + len(counts)
    return np.log(np.array([(counts[i] + 1) / total for i in ids], dtype=np.float32))
