"""The demo: index the shipped sample catalog into an embedded store and recommend in real time."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from .recommender import Recommender

DEMO_USER = "u001"


def sample_catalog_path() -> Path:
    """The sample catalog shipped with semrec (240+ items written for the project)."""
    return Path(str(resources.files("semrec") / "data" / "sample_catalog.csv"))


def sample_events_path() -> Path:
    """Sample events for ~30 users with coherent tastes."""
    return Path(str(resources.files("semrec") / "data" / "sample_events.csv"))


def sample_catalog() -> pd.DataFrame:
    return pd.read_csv(sample_catalog_path(), dtype={"item_id": str})


def sample_events() -> pd.DataFrame:
    return pd.read_csv(sample_events_path(), dtype={"item_id": str, "user_id": str})


def build_demo(path: str | Path, **open_options) -> Recommender:
    """Open the store at `path`; index the sample catalog and events if it is new."""
    rec = Recommender.open(path, **open_options)
    if rec.n_items == 0:
        rec.index_items(sample_catalog_path())
        rec.record_many(sample_events_path())
        if rec.layout.hybrid:
            rec.fit_collaborative()
    return rec
