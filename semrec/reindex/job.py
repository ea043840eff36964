"""The re-index job: incremental by content, resumable after a crash, blue-green on model change.

A run compares the catalog with the state of the live version (`plan`), then works through the
plan batch by batch: record the batch as pending, write it (encode + upsert; payload-only
changes keep their vector; deletions), make the write durable, and only then checkpoint it.
When the model or item template changed (or with `mode="rebuild"`) the catalog is built into a
new version beside the live one, users are rebuilt with the new model, the version is checked
(count, sample queries) and switched to atomically; the previous version is kept for rollback.

Embedded constraint: an incremental run writes to the live version, so no other process may
have the store open (`StoreLockedError` says so); a blue-green build works beside it while
readers keep serving, and readers pick up the switch with `Recommender.refresh()`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..catalog import Item, load_catalog, write_rejects
from ..collaborative import VectorLayout
from ..encoders import Encoder, ModelFingerprint, load_encoder
from ..errors import ConfigError, SemrecError
from ..profiles import UserProfile
from ..recommender import Recommender, RecommenderConfig, fit_collaborative
from ..schema import ERASING, ITEMS, USERS, unpack_user
from ..store import point_id
from ..store.edge import begin_rebuild, end_rebuild
from ..store.qdrant import COLLECTION_PREFIX
from ..users import ProfileService
from .plan import Mode, Plan, make_plan
from .state import State, chunked, stored_row
from .upload import UploadConfig, UploadingStore
from .versions import EdgeTarget, ServerTarget, open_target

log = logging.getLogger(__name__)

#: progress(phase, done, total): phases "encode", "payloads", "delete", "users".
Progress = Callable[[str, int, int], None]
MODES = ("full", "append", "rebuild")
#: Items per batch (the Ray job's too): progress is checkpointed after each acknowledged one.
BATCH_SIZE = 256


class ReindexCheckError(SemrecError):
    """A newly built version failed its checks; it was not switched to."""


@dataclass
class Summary:
    """What a re-index run did (printed as JSON by `semrec reindex`)."""

    mode: str
    store: str
    version: str | None = None
    blue_green: bool = False
    switched: bool = False
    items: int = 0
    new: int = 0
    changed: int = 0
    payload_only: int = 0
    unchanged: int = 0
    deleted: int = 0
    kept: int = 0
    rejected: int = 0
    encoded: int = 0
    upserted: int = 0
    users: int = 0
    seconds: float = 0.0
    items_per_s: float = 0.0
    rejects_path: str | None = None
    removed_versions: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 success, 3 partial success (some rows rejected)."""
        return 3 if self.rejected else 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=False)


def reindex(
    catalog: pd.DataFrame | str | Path,
    store: str | Path,
    *,
    mode: Mode = "full",
    encoder: Encoder | None = None,
    model: str | Path | None = None,
    config: RecommenderConfig | None = None,
    batch_size: int | None = None,
    rejects_path: str | Path | None = None,
    upload: UploadConfig | None = None,
    prefix: str = COLLECTION_PREFIX,
    api_key: str | None = None,
    client: Any = None,
    state_dir: str | Path | None = None,
    progress: Progress | None = None,
    sample_queries: int = 5,
) -> Summary:
    """Bring a store in line with a catalog, doing only the work the changes need.

    Args:
        catalog: CSV, Parquet (file or folder of shards), JSONL, or a DataFrame.
        store: an embedded store folder, or a Qdrant URL (http(s)://...).
        mode: "full" deletes items that left the catalog; "append" keeps them; "rebuild" builds
            a new version from scratch (blue-green) even if the model did not change.
        encoder / model: the encoder (default: the packaged all-MiniLM-L6-v2).
        batch_size: items per batch (None: `BATCH_SIZE`); progress is checkpointed after each
            acknowledged batch, so a crash costs at most one batch of encoding.
        rejects_path: where bad rows are written (JSONL: row, item_id, reason, data).
        upload: batching, parallel streams, retries and timeout for the writes.
        client / state_dir / prefix / api_key: server options (`client`: a ready QdrantClient).
        progress: called as progress(phase, done, total).

    Example:
        >>> summary = reindex("catalog.parquet", "shop-store")
        >>> summary.encoded, summary.exit_code
        (0, 0)
    """
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not valid; expected one of {', '.join(MODES)}.")
    batch_size = BATCH_SIZE if batch_size is None else batch_size
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not valid; expected an integer >= 1.")
    started = time.perf_counter()
    config = config or RecommenderConfig()
    upload = upload or UploadConfig()
    summary = Summary(mode=mode, store=str(store))
    parsed = load_catalog(catalog, template=config.template)
    summary.items, summary.rejected = len(parsed.items), len(parsed.rejects)
    if parsed.rejects and rejects_path:
        summary.rejects_path = str(write_rejects(parsed.rejects, rejects_path))
    for reject in parsed.rejects[:20]:
        log.warning("catalog row %s rejected: %s", reject.row, reject.reason)
    if not parsed.items:
        raise ConfigError(
            f"The catalog has no valid rows ({len(parsed.rejects)} rejected); nothing was changed. "
            "Fix the rows listed in the rejects file."
        )
    target = open_target(store, prefix=prefix, api_key=api_key, timeout=upload.timeout_s, client=client, state_dir=state_dir)
    try:
        with target.job_lock():
            encoder = encoder or load_encoder(model)
            _run(target, parsed.items, mode, encoder, config, batch_size, upload, progress, sample_queries, summary)
    finally:
        if isinstance(target, ServerTarget) and client is None:
            target.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.items_per_s = round(summary.items / summary.seconds, 1) if summary.seconds else 0.0
    return summary


def rollback(store: str | Path, *, prefix: str = COLLECTION_PREFIX, client: Any = None, state_dir: str | Path | None = None) -> str:
    """Make the previous version live again (one atomic switch). Returns its id."""
    target = open_target(store, prefix=prefix, client=client, state_dir=state_dir)
    try:
        with target.job_lock():
            return target.rollback()
    finally:
        if isinstance(target, ServerTarget) and client is None:
            target.close()


def needs_new_version(target: EdgeTarget | ServerTarget, live: str | None, encoder: Encoder, template: str) -> bool:
    """A new version is built when there is none, or the live one has another model or template."""
    if live is None:
        return True
    meta = target.collection_metadata(live)
    if meta is None:
        return False
    stored = ModelFingerprint.from_dict(meta["model"])
    return not stored.compatible_with(encoder.fingerprint) or meta.get("template", template) != template


def _run(target, items, mode, encoder, config, batch_size, upload, progress, sample_queries, summary) -> None:
    live = target.live()
    blue_green = mode == "rebuild" or needs_new_version(target, live, encoder, config.template)
    version = live
    if blue_green:
        version = _resumable_build(target, live, encoder, config.template) or target.new_version()
        log.info("building version %s beside the live version %s", version, live)
    summary.version, summary.blue_green = version, blue_green
    store = target.open(version)
    try:
        state = State(target.state_path(version))
    except BaseException:
        target.release(store)
        raise
    try:
        if blue_green:
            state.set_meta("status", "building")
            state.set_meta("model", encoder.fingerprint.to_dict())
            state.set_meta("template", config.template)
        writer = UploadingStore(store, upload)
        rec = Recommender(writer, encoder, config)
        _recover(state, writer)
        plan = make_plan(items, state.rows(), "full" if blue_green else mode)
        summary.new, summary.changed = len(plan.new), len(plan.text_changed) + len(plan.payload_only)
        summary.payload_only, summary.unchanged = len(plan.payload_only), plan.unchanged
        summary.deleted, summary.kept = len(plan.delete), plan.kept
        summary.encoded = _apply(plan, rec, writer, state, batch_size, progress)
        summary.upserted = writer.upserted
        if blue_green:
            summary.users = rebuild_users(rec.profiles, carried_profiles(target, version, live, store), batch_size, progress)
            check_version(rec.store, rec.layout, items, sample_queries)
            state.set_meta("status", "complete")
    finally:
        state.close()
        target.release(store)
    if blue_green:
        target.switch(version)
        if isinstance(target, EdgeTarget):
            end_rebuild(target.root)  # writers on the old version now follow the moved pointer
        summary.switched = True
    summary.removed_versions = target.cleanup()


def _resumable_build(target, live: str | None, encoder: Encoder, template: str) -> str | None:
    """A version left half-built by an interrupted run with the same model and template."""
    protected = {live, target.previous()}
    for version in reversed(target.versions()):
        path = target.state_path(version)
        if version in protected or not path.exists():
            continue
        state = State(path)
        try:
            model = state.meta("model")
            if (
                state.meta("status") == "building"
                and model
                and ModelFingerprint.from_dict(model).compatible_with(encoder.fingerprint)
                and state.meta("template") == template
            ):
                return version
        finally:
            state.close()
    return None


def _recover(state: State, store) -> None:
    """Re-derive the state of a batch interrupted by a crash from what the store holds; and
    rebuild a missing state file from the store (a store indexed without it)."""
    has_items = store.has_collection(ITEMS)
    pending = state.pending()
    if pending:
        hits = store.retrieve(ITEMS, [point_id("item", i) for i in pending]) if has_items else []
        rows = [stored_row(h.payload) for h in hits]
        found = {r.item_id for r in rows}
        state.commit(rows, [i for i in pending if i not in found])
        log.info("recovered an interrupted batch: %d of %d items had reached the store", len(found), len(pending))
    if has_items and len(state) == 0 and store.count(ITEMS):
        state.replace_all(stored_row(h.payload) for h in store.scroll(ITEMS, batch=2000))
        log.info("state rebuilt from the %d stored items", len(state))


def _apply(plan: Plan, rec: Recommender, store, state: State, batch_size: int, progress: Progress | None) -> int:
    """Work through the plan; returns the number of items encoded."""
    # a crash between the writes and the end of finish_indexing() (HNSW build) leaves the flag
    # set, so the next run finishes the index even when it has nothing else to write
    written = bool(state.meta("unoptimized", False))
    if not plan.empty:
        state.set_meta("unoptimized", True)
    encoded = 0
    todo = plan.encode
    for done, batch in enumerate(chunked(todo, batch_size), 1):
        encoded += _write(batch, rec, store, state, plan)
        written = True
        tick(progress, "encode", min(done * batch_size, len(todo)), len(todo))
    for done, batch in enumerate(chunked(plan.payload_only, batch_size), 1):
        state.begin(i.item_id for i in batch)
        stored = store.retrieve(ITEMS, [point_id("item", i.item_id) for i in batch], with_vectors=True)
        hits = {h.payload["item_id"]: rec.layout.text_part(h.vector) for h in stored}  # text part; the rest is kept
        kept = [i for i in batch if hits.get(i.item_id) is not None]
        if kept:
            rec.upsert_items(kept, np.stack([hits[i.item_id] for i in kept]))
        lost = [i for i in batch if hits.get(i.item_id) is None]  # state said stored, store disagrees
        if lost:
            encoded += len(lost)
            rec.upsert_items(lost, rec.encoder.encode([i.text for i in lost], batch_size=rec.config.encode_batch_size))
        make_durable(store)
        state.commit([plan.rows[i.item_id] for i in batch])
        written = True
        tick(progress, "payloads", min(done * batch_size, len(plan.payload_only)), len(plan.payload_only))
    for done, ids in enumerate(chunked(plan.delete, batch_size), 1):
        state.begin(ids)
        if store.has_collection(ITEMS):
            store.delete(ITEMS, [point_id("item", i) for i in ids])
        make_durable(store)
        state.commit(deleted=ids)
        written = True
        tick(progress, "delete", min(done * batch_size, len(plan.delete)), len(plan.delete))
    if written or not plan.empty:
        rec.finish_indexing()
        state.set_meta("unoptimized", False)
    return encoded


def _write(batch: list[Item], rec: Recommender, store, state: State, plan: Plan) -> int:
    state.begin(i.item_id for i in batch)
    vectors = rec.encoder.encode([i.text for i in batch], batch_size=rec.config.encode_batch_size)
    rec.upsert_items(batch, vectors)
    make_durable(store)
    state.commit([plan.rows[i.item_id] for i in batch])
    return len(batch)


def make_durable(store) -> None:
    """Wait until what was written to `store` survives a crash (Edge: flush; a server
    acknowledges each write)."""
    flush = getattr(store, "flush", None)
    if flush is not None:
        flush()


def carried_profiles(target, version: str, live: str | None, store) -> list[UserProfile] | None:
    """The users of the live version, to carry into the new `version` (None when there is no
    live version); erased users are not carried over.

    On the embedded store, serving processes log their user writes for the new version from
    the moment before the live users are read (`begin_rebuild`); the log is replayed by
    `rebuild_users` before the switch and by each process that opens the new version (replays
    are idempotent), so no event recorded during the rebuild is lost."""
    if live is None:
        return None
    erased: set[str] = set()
    if isinstance(target, EdgeTarget):
        begin_rebuild(target.root, version)
        erased = store.erased(USERS)
    return [
        UserProfile.model_validate(p)
        for p in map(unpack_user, target.read_profiles(live))
        if point_id("user", p["user_id"]) not in erased and not p.get(ERASING)
    ]


def rebuild_users(users: ProfileService, profiles: list[UserProfile] | None, batch_size: int, progress: Progress | None) -> int:
    """Store `profiles` (from `carried_profiles`) in the new version with vectors made by its
    model (summary text re-encoded, history pooled from the new item vectors; popularity
    recounted), refit the collaborative parts from them, and replay the user writes logged
    meanwhile. Returns the number of users carried over."""
    if profiles is None:
        return 0
    for done, chunk in enumerate(chunked(profiles, batch_size), 1):
        users.save_profiles(chunk)  # popularity is recounted from the stored users
        tick(progress, "users", min(done * batch_size, len(profiles)), len(profiles))
    if profiles and users.schema.layout.hybrid:
        fit_collaborative(users.items, users, users.config)  # the new version's collaborative parts, from the same users
    users.replay_changes()
    make_durable(users.store)
    return len(profiles)


def check_version(store, layout: VectorLayout, items: list[Item], sample_queries: int) -> None:
    """A new version must hold every catalog item, and find sample items by their own vectors
    (`ReindexCheckError` if not)."""
    count = store.count(ITEMS)
    if count != len(items):
        raise ReindexCheckError(
            f"The new version holds {count} items, but the catalog has {len(items)}; it was not "
            "switched to. Run the job again to resume it."
        )
    step = max(1, len(items) // max(1, sample_queries))
    sample = [point_id("item", i.item_id) for i in items[::step][:sample_queries]]
    for hit in store.retrieve(ITEMS, sample, with_vectors=True):
        found = store.query(ITEMS, layout.query(layout.text_part(hit.vector)), 10)
        if hit.id not in {h.id for h in found}:
            raise ReindexCheckError(
                f"A sample query for item {hit.payload.get('item_id')!r} did not find it in the new "
                "version; it was not switched to."
            )


def tick(progress: Progress | None, phase: str, done: int, total: int) -> None:
    """Call `progress(phase, done, total)` when given."""
    if progress is not None:
        progress(phase, done, total)
