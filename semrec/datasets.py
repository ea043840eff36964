"""Loaders for public interaction data sets: MovieLens, and any catalog + events files.

A `Dataset` keeps the catalog, the events and (optionally) dated tags apart, because the item
text of an evaluation must only use tags dated before the split: `Dataset.catalog(cutoff)` builds
the catalog table (accepted by `semrec.load_catalog`) for a given cutoff.

Example:
    >>> ds = load_movielens("data/ml-latest-small")                # doctest: +SKIP
    >>> ds.catalog(cutoff=1.5e9).head(1)["tags"].tolist()          # doctest: +SKIP
    [['Adventure', 'Animation', 'Children', 'Comedy', 'Fantasy', 'pixar', 'fun']]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .catalog import read_table
from .errors import CatalogError, ConfigError

#: Columns of `Dataset.events` (in this order).
EVENT_COLUMNS = ("user_id", "item_id", "kind", "ts", "weight")
#: Columns of `Dataset.tags`.
TAG_COLUMNS = ("user_id", "item_id", "tag", "ts")

#: A cutoff: None (every tag), one time for everyone, or a time per user (leave-last-out).
Cutoff = float | Mapping[str, float] | None


@dataclass
class Dataset:
    """Items, events and dated tags of one data set.

    Args:
        items: item_id, name, and optionally category, tags (list of static labels, e.g.
            genres), description and any payload column.
        events: user_id, item_id, kind, ts (epoch seconds), weight; ids are strings.
        tags: user_id, item_id, tag, ts; user-applied tags whose use depends on the split.
        top_tags: how many of an item's most frequent (allowed) user tags join its text.
    """

    name: str
    items: pd.DataFrame
    events: pd.DataFrame
    tags: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TAG_COLUMNS)))
    top_tags: int = 5

    def __post_init__(self) -> None:
        known = set(self.items["item_id"])
        unknown = ~self.events["item_id"].isin(known)
        if unknown.any():
            raise CatalogError(
                f"{int(unknown.sum())} event(s) name item ids not in the catalog, e.g. "
                f"{self.events.loc[unknown, 'item_id'].head(3).tolist()}; add them to the catalog "
                "or drop those events."
            )

    def allowed_tags(self, cutoff: Cutoff) -> pd.DataFrame:
        """The tag rows dated strictly before the cutoff (per user when it is a mapping; tags of
        users absent from the mapping are kept: all their data is training data)."""
        if cutoff is None or self.tags.empty:
            return self.tags
        if isinstance(cutoff, Mapping):
            limit = self.tags["user_id"].map(cutoff).astype(float).fillna(np.inf)
        else:
            limit = float(cutoff)
        return self.tags[self.tags["ts"] < limit]

    def catalog(self, cutoff: Cutoff = None) -> pd.DataFrame:
        """The catalog table whose item text uses only tags dated before `cutoff`: each item's
        tags are its static labels followed by its `top_tags` most frequent user tags."""
        frame = self.items.copy()
        base = frame["tags"] if "tags" in frame.columns else pd.Series([[]] * len(frame), index=frame.index)
        extra = top_tags_per_item(self.allowed_tags(cutoff), self.top_tags)
        frame["tags"] = [
            _merge(list(b) if isinstance(b, (list, tuple, np.ndarray)) else [], extra.get(i, []))
            for b, i in zip(base, frame["item_id"])
        ]
        return frame


def top_tags_per_item(tags: pd.DataFrame, n: int) -> dict[str, list[str]]:
    """An item's `n` most frequent tags (case-folded counts, ties alphabetical, first spelling kept).

    Example:
        >>> t = pd.DataFrame({"item_id": ["1", "1", "1"], "tag": ["Pixar", "pixar", "fun"]})
        >>> top_tags_per_item(t, 2)
        {'1': ['Pixar', 'fun']}
    """
    if n <= 0 or tags.empty:
        return {}
    frame = pd.DataFrame({"item_id": tags["item_id"].values, "tag": tags["tag"].astype(str).str.strip().values})
    frame = frame[frame["tag"] != ""]
    frame["key"] = frame["tag"].str.casefold()
    counts = frame.groupby(["item_id", "key"], sort=False).agg(n=("tag", "size"), tag=("tag", "first")).reset_index()
    counts = counts.sort_values(["item_id", "n", "key"], ascending=[True, False, True], kind="stable")
    return {item: group["tag"].head(n).tolist() for item, group in counts.groupby("item_id", sort=False)}


def load_movielens(path: str | Path, *, min_rating: float | None = None, top_tags: int = 5) -> Dataset:
    """MovieLens (ml-latest-small, ml-latest, ml-25m, ...: movies.csv, ratings.csv, tags.csv).

    Item text is title + genres + the item's most frequent tags (tags applied per split). Every
    rating is an implicit "rating" event (weight 1; the star value is kept in `rating`) unless
    `min_rating` drops the lower ones.
    """
    root = Path(path)
    for name in ("movies.csv", "ratings.csv"):
        if not (root / name).exists():
            raise CatalogError(
                f"{str(root / name)!r} does not exist; pass the folder of a MovieLens 'latest' "
                "style release (movies.csv, ratings.csv, optional tags.csv)."
            )
    movies = pd.read_csv(root / "movies.csv", dtype={"movieId": str})
    genres = movies["genres"].fillna("").map(lambda g: [x for x in g.split("|") if x and x != "(no genres listed)"])
    items = pd.DataFrame({"item_id": movies["movieId"].str.strip(), "name": movies["title"], "tags": genres})
    ratings = pd.read_csv(root / "ratings.csv", dtype={"userId": str, "movieId": str})
    if min_rating is not None:
        ratings = ratings[ratings["rating"] >= min_rating]
    events = pd.DataFrame(
        {
            "user_id": ratings["userId"].str.strip(),
            "item_id": ratings["movieId"].str.strip(),
            "kind": "rating",
            "ts": ratings["timestamp"].astype(float),
            "weight": 1.0,
            "rating": ratings["rating"].astype(float),
        }
    )
    tags = pd.DataFrame(columns=list(TAG_COLUMNS))
    if (root / "tags.csv").exists():
        raw = pd.read_csv(root / "tags.csv", dtype={"userId": str, "movieId": str, "tag": str})
        raw = raw.dropna(subset=["tag"])
        tags = pd.DataFrame(
            {"user_id": raw["userId"].str.strip(), "item_id": raw["movieId"].str.strip(), "tag": raw["tag"], "ts": raw["timestamp"].astype(float)}
        )
        tags = tags[tags["item_id"].isin(set(items["item_id"]))].reset_index(drop=True)
    return Dataset(root.name, items, events.reset_index(drop=True), tags, top_tags)


def load_dataset(
    catalog: pd.DataFrame | str | Path,
    events: pd.DataFrame | str | Path,
    tags: pd.DataFrame | str | Path | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    name: str = "custom",
    top_tags: int = 5,
) -> Dataset:
    """Any catalog + events (+ dated tags) files: CSV, Parquet or JSONL.

    Args:
        catalog: item_id, name, and optional category, tags, description, payload columns.
        events: user_id, item_id, ts and optional kind (default "view") and weight (default 1).
            `ts` may be epoch seconds or ISO-8601 text.
        tags: optional user_id, item_id, tag, ts rows (used per split, like MovieLens tags).
        columns: renames applied to every table first, e.g. {"movieId": "item_id"}.

    Example:
        >>> ds = load_dataset(pd.DataFrame({"item_id": [1], "name": ["Kettle"]}),
        ...                   pd.DataFrame({"user_id": ["u"], "item_id": [1], "ts": [0]}))
        >>> ds.events.columns.tolist()
        ['user_id', 'item_id', 'kind', 'ts', 'weight']
    """
    renames = dict(columns or {})
    items = read_table(catalog).rename(columns=renames).copy()
    raw = read_table(events).rename(columns=renames)
    for frame, required, what in ((items, ("item_id", "name"), "catalog"), (raw, ("user_id", "item_id", "ts"), "events")):
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise CatalogError(
                f"The {what} table has no {missing} column(s) (columns: {', '.join(map(str, frame.columns))}); "
                f"rename yours with columns={{'yourname': '{missing[0]}'}}."
            )
    items["item_id"] = _ids(items["item_id"], "item_id")
    if "tags" in items.columns:
        from .catalog import parse_tags

        items["tags"] = items["tags"].map(parse_tags)
    frame = pd.DataFrame(
        {
            "user_id": _ids(raw["user_id"], "user_id"),
            "item_id": _ids(raw["item_id"], "item_id"),
            "kind": raw["kind"].astype(str) if "kind" in raw.columns else "view",
            "ts": _times(raw["ts"]),
            "weight": raw["weight"].astype(float) if "weight" in raw.columns else 1.0,
        }
    )
    tag_frame = pd.DataFrame(columns=list(TAG_COLUMNS))
    if tags is not None:
        t = read_table(tags).rename(columns=renames)
        tag_frame = pd.DataFrame(
            {"user_id": _ids(t["user_id"], "user_id"), "item_id": _ids(t["item_id"], "item_id"), "tag": t["tag"].astype(str), "ts": _times(t["ts"])}
        )
    return Dataset(name, items, frame, tag_frame, top_tags)


def _ids(values: pd.Series, what: str) -> pd.Series:
    """Ids as strings, the way `semrec.catalog.canonical_id` compares them (42.0 == "42")."""
    if values.isna().any():
        raise ConfigError(f"{what} has {int(values.isna().sum())} missing value(s); every row needs an id.")
    if pd.api.types.is_float_dtype(values):
        if not np.all(np.mod(values.to_numpy(), 1) == 0):
            raise ConfigError(f"{what} has non-integer numbers, e.g. {values[np.mod(values, 1) != 0].iloc[0]!r}.")
        values = values.astype("int64")
    return values.astype(str).str.strip()


def _times(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    stamps = pd.to_datetime(values, utc=True, errors="coerce")
    if stamps.isna().any():
        bad = values[stamps.isna()].iloc[0]
        raise ConfigError(f"ts {bad!r} is not a time; expected epoch seconds or ISO-8601 text.")
    return pd.Series((stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(), index=values.index)


def _merge(first: list[str], second: list[str]) -> list[str]:
    seen = {t.casefold() for t in first}
    return first + [t for t in second if t.casefold() not in seen]
