"""Encode texts once: vectors cached on disk by model fingerprint and text hash."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..encoders import Encoder

log = logging.getLogger(__name__)


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


class CachedEncoder:
    """Wraps an `Encoder`; `encode` only runs the model on texts it has not seen before.

    The cache is one `.npy` + one key file per model fingerprint and backend under `folder`
    (None: in memory only). Vectors are exactly what the wrapped encoder returned.

    Example:
        >>> enc = CachedEncoder(load_encoder(), "benchmarks/out/cache")   # doctest: +SKIP
        >>> enc.encode(["Toy Story (1995)"]).shape                        # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, encoder: Encoder, folder: str | Path | None = None, batch_size: int = 128) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.dim = encoder.dim
        fp = encoder.fingerprint
        self.fingerprint = fp
        backend = getattr(encoder, "backend", "unknown")
        self._path = Path(folder) / f"{fp.weights}-{fp.dim}-{backend}" if folder else None
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, fp.dim), dtype=np.float32)
        if self._path and (self._path / "keys.txt").exists():
            keys = (self._path / "keys.txt").read_text().split()
            vectors = np.load(self._path / "vectors.npy")
            n = min(len(keys), len(vectors))
            self._index = {k: i for i, k in enumerate(keys[:n])}
            self._vectors = vectors[:n]

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def backend(self) -> str:
        return getattr(self.encoder, "backend", "unknown")

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """Rows for `texts` (`batch_size` is accepted for the `Encoder` protocol; the cache's own is used)."""
        keys = [text_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._index))
        if missing:
            by_key = dict(zip(keys, texts))
            log.info("encoding %d new texts (%d cached)", len(missing), len(keys) - len(missing))
            new = self.encoder.encode([by_key[k] for k in missing], batch_size=self.batch_size, show_progress=show_progress)
            start = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, new.astype(np.float32)])
            self._index.update({k: start + i for i, k in enumerate(missing)})
            self._save()
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._vectors[[self._index[k] for k in keys]]

    def _save(self) -> None:
        if not self._path:
            return
        self._path.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._index, key=self._index.__getitem__)
        tmp = self._path / f".vectors-{os.getpid()}.npy"
        np.save(tmp, self._vectors)
        os.replace(tmp, self._path / "vectors.npy")
        (self._path / "keys.txt").write_text("\n".join(keys))
