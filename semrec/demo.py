"""The demo: index the shipped sample catalog into an embedded store and recommend in real time."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .errors import ConfigError

if TYPE_CHECKING:
    from .recommender import Recommender

DEMO_USER = "u001"
#: A file `semrec demo` writes into the store folder it creates: the only folders it empties.
DEMO_MARKER = ".semrec-demo"


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


def prepare_demo_store(path: str | Path, *, fresh: bool = True) -> Path:
    """Make `path` ready for the demo's store, never deleting what the demo did not create.

    A missing or empty folder becomes a demo store (marked with `DEMO_MARKER`); a folder the
    demo made before is emptied when `fresh`, else reused; any other folder is refused.

    Example:
        >>> folder = prepare_demo_store("semrec-demo-store")         # doctest: +SKIP
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"Demo store {str(folder)!r} is a file; pick a folder for the demo with --store DIR."
        )
    marked = (folder / DEMO_MARKER).is_file()
    if folder.is_dir() and not marked and any(folder.iterdir()):
        raise ConfigError(
            f"Folder {str(folder)!r} already holds files that `semrec demo` did not create; "
            "nothing was deleted. Pick a new folder for the demo with --store NEW_DIR (or, if it is "
            "a demo store from an older semrec, delete it yourself)."
        )
    if marked and fresh:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEMO_MARKER).write_text("made by `semrec demo`; it may delete this folder\n")
    return folder


def build_demo(path: str | Path, **open_options) -> Recommender:
    """Open the store at `path`; index the sample catalog and events if it is new."""
    from .recommender import Recommender

    rec = Recommender.open(path, **open_options)
    if rec.n_items == 0:
        rec.index_items(sample_catalog_path())
        rec.record_many(sample_events_path())
        if rec.layout.hybrid:
            rec.fit_collaborative()
    return rec
