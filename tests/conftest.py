"""Shared fixtures: one real encoder per session (memoised), the shipped sample catalog, stores;
and `need_extra`, the one way a test asks for an optional extra."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from semrec import Recommender, load_encoder
from semrec.demo import sample_catalog, sample_events
from semrec.encoders import ModelFingerprint

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def extra_installed(extra: str, *modules: str) -> bool:
    """Whether a test of `extra` can run: True when every one of `modules` imports; False when
    none of them is installed (the extra is not). An extra that is installed but cannot run
    fails the test: one module installed and another missing (a half-installed extra), or a
    module that is installed but does not import (a broken install)."""
    installed = [m for m in modules if _installed(m)]
    if not installed:
        return False
    install = f"pip install 'semrec[{extra}]'"
    missing = [m for m in modules if m not in installed]
    if missing:
        pytest.fail(
            f"The {extra!r} extra is half installed: {', '.join(installed)} found, "
            f"{', '.join(missing)} missing. Run {install}, or uninstall {', '.join(installed)}.",
            pytrace=False,
        )
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - installed but broken: say so, never skip
            pytest.fail(
                f"The {extra!r} extra is installed but {module!r} does not import "
                f"({type(exc).__name__}: {exc}). Reinstall it: {install}",
                pytrace=False,
            )
    return True


def need_extra(extra: str, *modules: str) -> tuple[ModuleType, ...]:
    """The `modules` a test of `extra` needs, imported (in the order given). Skips the test (or
    the module, at module level) only when the extra is not installed; fails it when the extra
    is installed but cannot run (see `extra_installed`)."""
    if not extra_installed(extra, *modules):
        pytest.skip(f"needs the {extra!r} extra: pip install 'semrec[{extra}]'", allow_module_level=True)
    return tuple(importlib.import_module(m) for m in modules)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that does not import; a module without a spec
        return True


class WordEncoder:
    """A fast, deterministic stand-in for a sentence model: hashed bag of words, unit length."""

    name, dim, backend = "words", 64, "test"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def fingerprint(self) -> ModelFingerprint:
        return ModelFingerprint(name=self.name, weights="words-v1", dim=self.dim)

    def encode(self, texts, *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


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
