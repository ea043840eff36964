"""The distributed re-index: Ray Data reads Parquet shards, an actor pool validates and encodes
them (`map_batches`; GPU actors when the cluster has GPUs), and the driver streams the vectors
to a Qdrant server with the same upload rules as the single-machine job (byte+count batches,
parallel streams, retries), into a new version that is checked and switched to by alias.

It always builds a complete new version (blue-green). It writes the same state file as the
single-machine job, so later incremental runs (`semrec reindex`) start from it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..catalog import Item, Reject, load_catalog, write_rejects
from ..encoders import ModelFingerprint, load_encoder
from ..errors import ConfigError, require
from ..items import ItemStore
from ..recommender import RecommenderConfig
from ..schema import Schema
from ..users import ProfileService
from .job import BATCH_SIZE, Progress, ReindexCheckError, Summary, carried_profiles, check_version, make_durable, rebuild_users, tick
from .state import State, item_row
from .upload import UploadConfig, UploadingStore
from ..store.edge import end_rebuild
from ..store.qdrant import COLLECTION_PREFIX
from .versions import EdgeTarget, ServerTarget, open_target

log = logging.getLogger(__name__)
_ITEM_KEYS = ("item_id", "name", "category", "tags", "description", "text", "category_levels")


class EncodeBatch:
    """A Ray Data actor: validates a batch of catalog rows and encodes the good ones."""

    def __init__(self, model: str | None, template: str, encode_batch_size: int, backend: str = "auto") -> None:
        self.encoder = load_encoder(model, backend)
        self.template, self.encode_batch_size = template, encode_batch_size
        self.fingerprint = json.dumps(self.encoder.fingerprint.to_dict())

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        catalog = load_catalog(frame.reset_index(drop=True), template=self.template)
        vectors = self.encoder.encode([i.text for i in catalog.items], batch_size=self.encode_batch_size)
        rows = [
            {"payload": json.dumps(i.payload(), ensure_ascii=False), "vector": v.tolist(), "reject": None}
            for i, v in zip(catalog.items, vectors)
        ]
        rows += [{"payload": None, "vector": None, "reject": r.to_json()} for r in catalog.rejects]
        out = pd.DataFrame(rows, columns=["payload", "vector", "reject"])
        out["fingerprint"] = self.fingerprint
        return out


def ray_reindex(
    source: str | Path,
    url: str,
    *,
    model: str | None = None,
    backend: str = "auto",
    config: RecommenderConfig | None = None,
    batch_size: int | None = None,
    actors: int = 1,
    use_gpu: bool | None = None,
    upload: UploadConfig | None = None,
    prefix: str = COLLECTION_PREFIX,
    api_key: str | None = None,
    client: Any = None,
    state_dir: str | Path | None = None,
    rejects_path: str | Path | None = None,
    progress: Progress | None = None,
    sample_queries: int = 5,
) -> Summary:
    """Build a new version of a server store from Parquet shards on a Ray cluster, and switch.

    Args:
        source: a Parquet file or a folder of Parquet shards (any path Ray Data reads).
        url: the Qdrant server (or, with `client`, a name for a ready `QdrantClient`).
        actors: encoder actors in the pool; `use_gpu` None: one GPU per actor when the cluster
            has GPUs.
        backend: the encoder backend of every actor (see `semrec.load_encoder`); use the same
            one as the single-machine job for identical vectors.
        Others as `semrec.reindex.reindex`. Calls `ray.init()` if Ray is not initialised.

    Example:
        >>> ray.init(num_cpus=8)
        >>> ray_reindex("s3://bucket/catalog/", "http://qdrant:6333", actors=4)
    """
    ray = require("ray", "distributed")
    require("ray.data", "distributed")
    started = time.perf_counter()
    config = config or RecommenderConfig()
    upload = upload or UploadConfig()
    if not ray.is_initialized():
        ray.init()
    gpus = ray.cluster_resources().get("GPU", 0) if use_gpu is None else (1 if use_gpu else 0)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the first row of an id wins, as in one process
    dataset = ray.data.read_parquet(str(source)).map_batches(
        EncodeBatch,
        fn_constructor_kwargs={
            "model": model, "template": config.template, "encode_batch_size": config.encode_batch_size, "backend": backend,
        },
        batch_size=BATCH_SIZE if batch_size is None else batch_size,
        batch_format="pandas",
        concurrency=actors,
        num_gpus=1 if gpus else 0,
    )
    target = open_target(url, prefix=prefix, api_key=api_key, timeout=upload.timeout_s, client=client, state_dir=state_dir)
    if not isinstance(target, ServerTarget):
        raise ConfigError(f"The Ray job writes to a Qdrant server; {url!r} is not a server URL (http://host:6333).")
    summary = Summary(mode="rebuild", store=str(url), blue_green=True)
    try:
        with target.job_lock():
            _build(dataset, target, model, backend, config, upload, progress, sample_queries, summary, rejects_path)
    finally:
        if client is None:
            target.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.items_per_s = round(summary.items / summary.seconds, 1) if summary.seconds else 0.0
    return summary


def _build(dataset, target: ServerTarget, model, backend, config, upload, progress, sample_queries, summary, rejects_path) -> None:
    live = target.live()
    version = target.new_version()
    summary.version = version
    store = target.open(version)
    state = State(target.state_path(version))
    state.set_meta("status", "building")
    state.set_meta("template", config.template)
    writer = UploadingStore(store, upload)
    catalog: ItemStore | None = None  # made with the model the actors report: no encoder here
    seen: set[str] = set()
    rejects: list[Reject] = []
    items: list[Item] = []  # ids and texts only are kept for the checks
    for frame in dataset.iter_batches(batch_format="pandas", batch_size=None):
        rejects += [_reject(r) for r in frame["reject"].dropna()]
        good = frame[frame["payload"].notna()]
        batch, vectors = [], []
        for payload, vector in zip(good["payload"], good["vector"]):
            item = _item(json.loads(payload))
            if item.item_id in seen:
                rejects.append(Reject(-1, f"duplicate item_id {item.item_id!r} (in another shard)", item.item_id))
                continue
            seen.add(item.item_id)
            batch.append(item)
            vectors.append(np.asarray(vector, dtype=np.float32))
        if not batch:
            continue
        if catalog is None:
            fingerprint = ModelFingerprint.from_dict(json.loads(good["fingerprint"].iloc[0]))
            state.set_meta("model", fingerprint.to_dict())
            catalog = ItemStore(writer, Schema(writer, fingerprint, config), config)
        state.begin(i.item_id for i in batch)
        catalog.upsert(batch, np.stack(vectors))
        make_durable(writer)
        state.commit(item_row(i) for i in batch)
        items += [Item(i.item_id, i.name, text=i.text) for i in batch]
        tick(progress, "encode", len(items), len(items))
    summary.rejected = len(rejects)
    if rejects and rejects_path:
        summary.rejects_path = str(write_rejects(rejects, rejects_path))
    if catalog is None:
        raise ReindexCheckError("The catalog has no valid rows; nothing was switched.")
    catalog.finish_indexing()
    summary.items = summary.new = summary.encoded = len(items)
    summary.upserted = writer.upserted
    profiles = carried_profiles(target, version, live, store)
    if profiles:  # their summaries are encoded here, on the driver, by the actors' model
        users = ProfileService(writer, catalog.schema, catalog, load_encoder(model, backend), config)
        summary.users = rebuild_users(users, profiles, 256, progress)
    check_version(writer, catalog.schema.layout, items, sample_queries)
    state.set_meta("status", "complete")
    state.close()
    target.switch(version)
    if isinstance(target, EdgeTarget):
        end_rebuild(target.root)
    summary.switched = True
    summary.removed_versions = target.cleanup()


def _item(payload: dict[str, Any]) -> Item:
    extra = {k: v for k, v in payload.items() if k not in _ITEM_KEYS}
    return Item(
        payload["item_id"], payload["name"], payload.get("category"), list(payload.get("tags", [])),
        payload.get("description"), extra, payload.get("text", ""),
    )


def _reject(text: str) -> Reject:
    data = json.loads(text)
    return Reject(data["row"], data["reason"], data.get("item_id"), data.get("data") or {})
