"""Re-index benchmark: a full re-index of a synthetic N-item catalog (short item texts), then an
unchanged re-index of the same catalog, on the embedded store with the packaged model.

    .venv/bin/python benchmarks/reindex.py --items 100000 --out benchmarks/out/reindex.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import time
from pathlib import Path

import pandas as pd

from semrec import load_encoder
from semrec.reindex import reindex

CATEGORIES = ["Electronics > Audio", "Electronics > Phones", "Kitchen > Cookware", "Garden > Tools", "Books > Fiction",
              "Sports > Running", "Toys > Puzzles", "Home > Lighting", "Beauty > Skincare"]
ADJECTIVES = ["wireless", "compact", "stainless", "organic", "vintage", "smart", "foldable", "waterproof", "ceramic", "bamboo"]
NOUNS = ["speaker", "kettle", "lamp", "trowel", "novel", "shoe", "puzzle", "serum", "charger", "blender", "tent", "mug"]


def synthetic_catalog(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(ADJECTIVES, 2)
        rows.append({
            "item_id": f"it-{i:06d}",
            "name": f"{words[0].title()} {words[1]} {rng.choice(NOUNS)} {i}",
            "category": rng.choice(CATEGORIES),
            "tags": "|".join(rng.sample(ADJECTIVES, 2)),
            "price": round(rng.uniform(1, 500), 2),
        })
    return pd.DataFrame(rows)


class HashEncoder:
    """Stand-in for the model (deterministic unit vectors from a text hash): measures the job's own
    cost (plan, state, store writes) without the encoder's. Not for quality."""

    name, dim, backend = "hash-384", 384, "hash"

    def __init__(self) -> None:
        from semrec.encoders import ModelFingerprint

        self.fingerprint = ModelFingerprint(self.name, "hash", self.dim)

    def encode(self, texts, *, batch_size: int = 64, show_progress: bool = False):
        import hashlib

        import numpy as np

        seeds = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts]
        rows = np.stack([np.random.default_rng(s).standard_normal(self.dim) for s in seeds]) if seeds else np.zeros((0, self.dim))
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")

    def encode_query(self, text):
        return self.encode([text])[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--store", default="benchmarks/out/reindex-store")
    parser.add_argument("--out", default="benchmarks/out/reindex.json")
    parser.add_argument("--encoder", choices=["model", "hash"], default="model", help="hash: the job without the model")
    args = parser.parse_args()
    catalog_path = Path(args.store).with_suffix(".parquet")
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    synthetic_catalog(args.items).to_parquet(catalog_path, index=False)
    shutil.rmtree(args.store, ignore_errors=True)
    encoder = load_encoder() if args.encoder == "model" else HashEncoder()
    full = reindex(catalog_path, args.store, encoder=encoder, batch_size=args.batch_size)
    print(full.to_json(), flush=True)
    unchanged = reindex(catalog_path, args.store, encoder=encoder, batch_size=args.batch_size)
    print(unchanged.to_json(), flush=True)
    result = {
        "items": args.items,
        "encoder": args.encoder,
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "full": {"seconds": full.seconds, "items_per_s": full.items_per_s, "encoded": full.encoded},
        "unchanged": {"seconds": unchanged.seconds, "encoded": unchanged.encoded, "upserted": unchanged.upserted},
        "at": time.strftime("%Y-%m-%d %H:%M"),
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
