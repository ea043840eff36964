"""Shared fixtures: one real encoder per session (memoised), the shipped sample catalog, stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semrec import Recommender, load_encoder
from semrec.demo import sample_catalog, sample_events

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class CountingEncoder:
    """The real encoder, memoised per text, counting the texts it really had to encode."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.dim, self.backend = inner.name, inner.dim, inner.backend
        self.cache: dict[str, np.ndarray] = {}
        self.encoded = 0

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def encode(self, texts, *, batch_size=64, show_progress=False):
        self.encoded += len(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for text, vector in zip(todo, self.inner.encode(todo, batch_size=batch_size)):
                self.cache[text] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])

    def encode_query(self, text):
        return self.encode([text])[0]


@pytest.fixture(scope="session")
def real_encoder():
    return load_encoder(backend="torch")


@pytest.fixture(scope="session")
def shared_encoder(real_encoder):
    return CountingEncoder(real_encoder)


@pytest.fixture
def encoder(shared_encoder):
    shared_encoder.encoded = 0
    return shared_encoder


@pytest.fixture(scope="session")
def catalog() -> pd.DataFrame:
    return sample_catalog()


@pytest.fixture(scope="session")
def events() -> pd.DataFrame:
    return sample_events()


@pytest.fixture(params=["edge", "qdrant"])
def backend(request):
    return request.param


@pytest.fixture
def open_rec(tmp_path, encoder):
    """Open a Recommender on the given backend ("edge": a folder; "qdrant": client local mode)."""
    opened = []

    def _open(backend: str = "edge", **options):
        if backend == "edge":
            rec = Recommender.open(tmp_path / "store", encoder=encoder, **options)
        else:
            rec = Recommender.open(url=":memory:", encoder=encoder, **options)
        opened.append(rec)
        return rec

    yield _open
    for rec in opened:
        try:
            rec.close()
        except Exception:
            pass


@pytest.fixture
def shop(open_rec, catalog, backend):
    """A Recommender with the sample catalog indexed, on each backend."""
    rec = open_rec(backend)
    report = rec.index_items(catalog)
    assert report.indexed == len(catalog) and not report.rejected
    return rec
