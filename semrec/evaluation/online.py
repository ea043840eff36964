"""The live path measured: a `Recommender` on a real store is given a split's catalogue and
training events, fitted, and asked for each evaluated user's top k through `recommend`; its
lists are scored with the same metrics as every other method."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from ..recommender import Recommender, RecommenderConfig
from .protocol import EvalTargets, TrainData, score_lists


def evaluate_recommender(
    data: TrainData,
    targets: EvalTargets,
    item_vectors: np.ndarray,
    encoder,
    config: RecommenderConfig | None = None,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    path: str | Path | None = None,
    url: str | None = None,
) -> tuple[dict, dict]:
    """Metrics of `Recommender.recommend` under `config` (None: `RecommenderConfig()`) on an
    embedded store (a temporary folder unless `path`), or on a Qdrant server at `url`, plus
    timings {"load_s", "fit_s", "recommend_ms_p50"}."""
    with tempfile.TemporaryDirectory(prefix="semrec-online-") as tmp:
        store = {"url": url} if url else {"path": Path(path or tmp) / "store"}
        rec = Recommender.open(**store, encoder=encoder, config=config or RecommenderConfig())
        try:
            started = time.perf_counter()
            rec.upsert_items(data.items, item_vectors)
            rec.finish_indexing()
            columns = [c for c in ("user_id", "item_id", "kind", "ts", "weight") if c in data.events.columns]
            rec.record_many(data.events[columns])
            loaded = time.perf_counter()
            if rec.layout.hybrid:
                rec.fit_collaborative()
            fitted = time.perf_counter()
            rows, times = [], []
            for user in data.user_ids[targets.users]:
                t0 = time.perf_counter()
                ids = rec.recommend(user, k=k, exclude_seen=exclude_seen, explain_results=False).item_ids
                times.append(time.perf_counter() - t0)
                rows.append([data.item_index[i] for i in ids])
        finally:
            rec.close()
    metrics = score_lists(np.array(rows, dtype=np.int64), data, targets, k=k, item_vectors=item_vectors)
    timing = {"load_s": round(loaded - started, 1), "fit_s": round(fitted - loaded, 1), "recommend_ms_p50": round(1000 * float(np.median(times)), 2)}
    return metrics, timing
