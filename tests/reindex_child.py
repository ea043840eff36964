"""A re-index job in a child process, with the real model's vectors cached by the parent (so
the child starts in a second): `python tests/reindex_child.py CACHE CATALOG STORE MODE BATCH [TRACE]`.

Before each encode call it appends the number of texts to TRACE (so a parent that kills it
knows how many items it started to encode)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def cache_vectors(folder: Path, encoder, *catalogs, extra_texts=()) -> Path:
    """Encode every item text of the catalogs (and `extra_texts`) with `encoder`, saved for a child."""
    from semrec.catalog import load_catalog

    folder.mkdir(parents=True, exist_ok=True)
    texts = sorted({i.text for c in catalogs for i in load_catalog(c).items} | set(extra_texts))
    np.save(folder / "vectors.npy", encoder.encode(texts))
    (folder / "texts.json").write_text(json.dumps(texts))
    (folder / "fingerprint.json").write_text(json.dumps(encoder.fingerprint.to_dict()))
    return folder


class CachedEncoder:
    """The real model's vectors for known texts; the real model is loaded for any other text."""

    backend = "torch"

    def __init__(self, folder: Path, trace: Path | None = None, delay: float = 0.0) -> None:
        from semrec.encoders import ModelFingerprint

        texts = json.loads((folder / "texts.json").read_text())
        self.vectors = dict(zip(texts, np.load(folder / "vectors.npy")))
        self.fingerprint = ModelFingerprint.from_dict(json.loads((folder / "fingerprint.json").read_text()))
        self.name, self.dim = self.fingerprint.name, self.fingerprint.dim
        self.trace, self.delay, self._real = trace, delay, None

    def encode(self, texts, *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        if self.trace is not None:
            with open(self.trace, "a") as handle:
                handle.write(f"{len(texts)}\n")
        time.sleep(self.delay)
        missing = [t for t in texts if t not in self.vectors]
        if missing:
            if self._real is None:
                from semrec import load_encoder

                self._real = load_encoder()
            self.vectors.update(zip(missing, self._real.encode(missing)))
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


def main(argv: list[str]) -> int:
    from semrec.reindex import reindex

    cache, catalog, store, mode, batch = argv[:5]
    trace = Path(argv[5]) if len(argv) > 5 else None
    delay = float(argv[6]) if len(argv) > 6 else 0.0
    summary = reindex(catalog, store, mode=mode, encoder=CachedEncoder(Path(cache), trace, delay), batch_size=int(batch))
    print(summary.to_json())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
