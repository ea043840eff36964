"""The embedded backend: Qdrant Edge (`qdrant-edge-py`), one folder, one shard per collection."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import qdrant_edge as qe

from ..errors import ConfigError, StateFileError, StoreLockedError
from ..files import (
    FolderLock,
    atomic_write_json,
    live_folder,
    live_version_folder,
    read_pointer,
    read_state_json,
    read_store_meta,
    store_folder,
    version_ids,
)
from .base import HNSW_EF, Condition, Filter, Hit, IndexKind, LRUCache, ScoreFormula, UpdateMode, query_filled, use_exact

log = logging.getLogger(__name__)

VECTOR = "dense"
_META_FILE = "semrec.json"
#: A versioned store folder has `CURRENT` (JSON: {"version": id, "previous": id}) naming the live
#: folder under `versions/<id>/`; the id "." names the store folder itself (a store indexed
#: before it was versioned). A folder without `CURRENT` is a plain store.
POINTER_FILE = "CURRENT"
VERSIONS_DIR = "versions"
LEGACY_VERSION = "."
#: At the store folder: the point ids erased from each collection (ids, never the user ids they
#: were made from). Every version honours it when opened, so a rollback or a re-index never
#: brings an erased user back.
ERASED_FILE = "erased.json"
#: At the store folder while a blue-green rebuild runs: {"version": the version being built}.
REBUILD_FILE = "REBUILDING"
#: At the store folder: `<version>.jsonl`, user writes made to an older version while (or after)
#: `<version>` was built from it; replayed into `<version>` when it is opened (writes are
#: idempotent, so replaying twice is harmless).
CHANGES_DIR = "changes"
# qdrant-edge-py 0.9.0 never matches a bool value (MatchValue(True) finds nothing, indexed or
# not), so indexed bool fields are stored as 0/1 integers and turned back into bools on read.
_UPDATE_MODES = {"upsert": None, "insert_only": qe.UpdateMode.InsertOnly, "update_only": qe.UpdateMode.UpdateOnly}
_INDEX_TYPES = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Integer,
    "datetime": qe.PayloadSchemaType.Datetime,
}
_DECAYS = {"exp": qe.DecayKind.Exp, "gauss": qe.DecayKind.Gauss, "lin": qe.DecayKind.Lin}


class EdgeStore:
    """Collections as Qdrant Edge shards under one folder (created if absent).

    Example:
        >>> store = EdgeStore("/tmp/my-store")
        >>> store.create_collection("items", 384, {"model": "..."})
    """

    kind = "edge"

    def __init__(self, path: str | Path) -> None:
        #: The folder given; `path` is the folder in use (the live version when versioned).
        self.root = store_folder(path)
        self._pointer_stamp = _stamp(self.root / POINTER_FILE)
        #: The live version id when the folder is versioned (see `POINTER_FILE`), else None.
        self.version, self.path = live_folder(self.root)
        self._lock = FolderLock(self.path)
        self._meta = read_store_meta(self.path)
        self._shards: dict[str, qe.EdgeShard] = {}
        self._bools: dict[str, set[str]] = {}
        self._counts: dict[str, int] = {}  # this process holds the folder's lock: only it writes
        self._exclusions = ExclusionCache()
        #: Guards what this object keeps about the folder (opened shards, metadata, counts):
        #: threads share one store, and a shard must be opened once (a second open of the same
        #: folder fails in the engine).
        self._guard = threading.RLock()
        for name in list(self._meta["collections"]):
            _finish_rewrite(self.path / name)
        self._apply_erasures()

    def switch_pending(self) -> bool:
        """Whether `CURRENT` changed since this store last followed it (one `stat`): `refresh()`
        then has a switch to follow."""
        return _stamp(self.root / POINTER_FILE) != self._pointer_stamp

    def refresh(self) -> bool:
        """Follow a blue-green switch: reopen on the version `CURRENT` now names.

        Cheap when nothing changed (one `stat`). Returns True when it switched; False when
        nothing changed, or the new version is still held by another process (try again later).
        """
        with self._guard:
            return self._refresh()

    def _refresh(self) -> bool:
        stamp = _stamp(self.root / POINTER_FILE)
        if stamp == self._pointer_stamp:
            return False
        pointer = read_pointer(self.root)
        if pointer is None or pointer["version"] == self.version:
            self._pointer_stamp = stamp
            return False
        path = live_version_folder(self.root, pointer["version"])
        try:
            lock = FolderLock(path)
        except StoreLockedError:
            return False
        old_shards, old_lock = self._shards, self._lock
        self.path, self.version, self._lock = path, pointer["version"], lock
        self._meta = read_store_meta(path)
        self._shards, self._bools, self._counts = {}, {}, {}
        self._pointer_stamp = stamp
        for shard in old_shards.values():
            shard.close()
        old_lock.release()
        self._apply_erasures()
        log.info("store %s switched to version %s", self.root, self.version)
        return True

    @property
    def store_root(self) -> Path:
        """The store folder (the parent of `versions/` when this is one version's folder)."""
        if self.path.parent.name == VERSIONS_DIR:
            return self.path.parent.parent
        return self.root

    # erasure -----------------------------------------------------------------------------------
    def erase(self, name: str, ids: Sequence[str]) -> None:
        """Delete points so that no file of the store keeps them: recorded as erased (every
        version deletes them when opened), deleted here, the collection rewritten (the engine's
        write-ahead log and segments still hold deleted points), and the same done in every
        other version that no process holds open (one that is held does it when opened)."""
        if not ids:
            return
        erased_path = self.store_root / ERASED_FILE
        with self._guard:
            erased = _read_erased(self.store_root)
            erased[name] = sorted({*erased.get(name, []), *ids})
            atomic_write_json(erased_path, erased)
            self.delete(name, ids)
            self.rewrite(name)
        for folder in _version_folders(self.store_root):
            if folder.resolve() == self.path.resolve():
                continue
            try:
                other = EdgeStore(folder)  # applies the erasures as it opens
            except StoreLockedError:
                continue
            other.close()

    def rewrite(self, name: str) -> None:
        """Copy a collection's live points into a fresh shard and replace the old one (so that
        deleted points leave its files). Crash-safe: an interrupted rewrite is finished or
        undone when the store opens."""
        with self._guard:
            shard = self._shard(name)
            entry = self._meta["collections"][name]
            target = self.path / f"{name}{_REWRITE_SUFFIX}"
            shutil.rmtree(target, ignore_errors=True)
            config = qe.EdgeConfig(vectors={VECTOR: qe.EdgeVectorParams(size=entry["dim"], distance=qe.Distance.Dot)})
            fresh = qe.EdgeShard.create(str(target), config)
            for field_name, kind in entry["indexes"].items():
                fresh.update(qe.UpdateOperation.create_field_index(field_name, _INDEX_TYPES[kind]))
            offset = None
            while True:
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=1000, with_payload=True, with_vector=[VECTOR])
                )
                if records:
                    points = [qe.Point(str(r.id), r.vector, r.payload) for r in records]
                    fresh.update(qe.UpdateOperation.upsert_points(points))
                if offset is None:
                    break
            fresh.optimize()
            fresh.flush()
            fresh.close()
            shard.close()
            del self._shards[name]
            live, old = self.path / name, self.path / f"{name}{_REPLACED_SUFFIX}"
            os.replace(live, old)
            os.replace(target, live)
            _fsync_dir(self.path)
            shutil.rmtree(old)
            self._counts.pop(name, None)

    def _apply_erasures(self) -> None:
        erased = _read_erased(self.store_root)
        for name, ids in erased.items():
            if not self.has_collection(name) or not ids:
                continue
            present = [h.id for h in self.retrieve(name, ids, with_payload=False)]
            if present:
                log.info("erasing %d points recorded as erased from %s/%s", len(present), self.path, name)
                self.delete(name, present)
                self.rewrite(name)
                with self._guard:
                    self._meta["erased_since_open"] = True  # figures derived from them are stale
                    self._save_meta()

    def take_erasure_notice(self) -> bool:
        """True (once) when erasures recorded elsewhere were applied to this version since its
        owner last asked: what was derived from the erased points (e.g. counts) needs redoing."""
        with self._guard:
            if not self._meta.pop("erased_since_open", False):
                return False
            self._save_meta()
            return True

    def erased(self, name: str) -> set[str]:
        """The point ids recorded as erased from a collection."""
        return set(_read_erased(self.store_root).get(name, []))

    # changes made during a rebuild -------------------------------------------------------------
    def rebuild_target(self) -> str | None:
        """The version that writes here must also reach: the one a running rebuild is building,
        or the live one when this process still serves an older version (None otherwise).
        Costs two `stat` calls when no rebuild runs."""
        root = self.store_root
        marker = root / REBUILD_FILE
        if marker.exists():
            found = read_state_json(marker, lambda: "Delete it if no re-index job is running (the job writes it again).")
            version = found.get("version") if isinstance(found, dict) else None
            return None if version == self.path.name else version  # writes to the new one itself
        if self.version is not None and _stamp(root / POINTER_FILE) != self._pointer_stamp:
            pointer = read_pointer(root)
            if pointer and pointer["version"] != self.version:
                return pointer["version"]
        return None

    def log_change(self, version: str, entry: dict[str, Any]) -> None:
        """Append a user write to the change log of `version` (durable before returning)."""
        folder = self.store_root / CHANGES_DIR
        folder.mkdir(exist_ok=True)
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._guard, open(folder / f"{version}.jsonl", "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def replay_changes(self, apply: Callable[[list[dict[str, Any]]], None]) -> int:
        """Pass the user writes made to an older version for this one (see `CHANGES_DIR`) to
        `apply`, then empty the log; writers wait meanwhile (a lock on the log). Returns how
        many entries were replayed."""
        path = self.store_root / CHANGES_DIR / f"{self.path.name}.jsonl"
        if self.path.parent.name != VERSIONS_DIR or not path.exists():
            return 0
        with open(path, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            entries = []
            for line in handle.read().splitlines():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("skipping a torn line in %s (a write cut short by a crash)", path)
            if entries:
                apply(entries)
            handle.seek(0)
            handle.truncate()
            os.fsync(handle.fileno())
        return len(entries)

    def scrub_changes(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite every change log without the entries `keep` refuses (erasure)."""
        folder = self.store_root / CHANGES_DIR
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            with open(path, "r+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                lines = handle.read().splitlines()
                kept = [line for line in lines if _parses_and_keeps(line, keep)]
                if len(kept) != len(lines):
                    handle.seek(0)
                    handle.truncate()
                    handle.write("".join(line + "\n" for line in kept))
                    handle.flush()
                    os.fsync(handle.fileno())

    def flush(self) -> None:
        """Make every acknowledged write durable (before a job records it as done)."""
        for shard in self._shards.values():
            shard.flush()

    # collections -------------------------------------------------------------------------------
    def has_collection(self, name: str) -> bool:
        return name in self._meta["collections"]

    def create_collection(self, name: str, dim: int, metadata: dict[str, Any]) -> None:
        with self._guard:
            if self.has_collection(name):
                raise ConfigError(f"Collection {name!r} already exists in {str(self.path)!r}.")
            config = qe.EdgeConfig(vectors={VECTOR: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot)})
            self._shards[name] = qe.EdgeShard.create(str(self.path / name), config)
            self._meta["collections"][name] = {"dim": dim, "metadata": metadata, "indexes": {}}
            self._save_meta()

    def collection_metadata(self, name: str) -> dict[str, Any]:
        return dict(self._meta["collections"][name]["metadata"])

    def create_payload_index(self, name: str, field_name: str, kind: IndexKind) -> None:
        with self._guard:
            indexes = self._meta["collections"][name]["indexes"]
            if field_name in indexes:
                return
            self._shard(name).update(qe.UpdateOperation.create_field_index(field_name, _INDEX_TYPES[kind]))
            indexes[field_name] = kind
            self._bools.pop(name, None)
            self._save_meta()

    def payload_indexes(self, name: str) -> set[str]:
        return set(self._meta["collections"][name]["indexes"])

    def payload_index_kinds(self, name: str) -> dict[str, IndexKind | None]:
        return dict(self._meta["collections"][name]["indexes"])

    # points ------------------------------------------------------------------------------------
    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict],
        *,
        only_if: Filter | None = None,
        mode: UpdateMode = "upsert",
    ) -> None:
        if not len(ids):
            return
        rows = np.asarray(vectors, dtype=np.float32).tolist()
        bools = self._bool_fields(name)
        points = [
            qe.Point(pid, {VECTOR: row}, _bools_to_ints(payload, bools))
            for pid, row, payload in zip(ids, rows, payloads)
        ]
        condition = _edge_filter(only_if, self._exclusions)
        self._shard(name).update(qe.UpdateOperation.upsert_points(points, condition, _UPDATE_MODES[mode]))
        self._counts.pop(name, None)

    def set_payload(self, name: str, ids: Sequence[str], payload: dict[str, Any], *, only_if: Filter | None = None) -> None:
        if not ids:
            return
        payload = _bools_to_ints(payload, self._bool_fields(name))
        if only_if is None:
            self._shard(name).update(qe.UpdateOperation.set_payload(list(ids), payload))
            return
        selector = Filter(list(only_if.must), list(only_if.exclude_ids), list(ids), list(only_if.should))
        self._shard(name).update(qe.UpdateOperation.set_payload_by_filter(_edge_filter(selector, self._exclusions), payload))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._shard(name).update(qe.UpdateOperation.delete_points(list(ids)))
            self._counts.pop(name, None)

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, with_payload: bool | Sequence[str] = True
    ) -> list[Hit]:
        if not ids:
            return []
        selected = with_payload if isinstance(with_payload, bool) else list(with_payload)
        records = self._shard(name).retrieve(list(ids), selected, [VECTOR] if with_vectors else False)
        found = {str(r.id): self._hit(name, r, with_vectors) for r in records}
        return [found[i] for i in ids if i in found]

    def query(
        self,
        name: str,
        vector: np.ndarray,
        k: int,
        filter: Filter | None = None,
        exact: bool | None = None,
        with_vectors: bool = False,
        formula: ScoreFormula | None = None,
    ) -> list[Hit]:
        shard = self._shard(name)
        condition = _edge_filter(filter, self._exclusions)
        nearest = qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=VECTOR)

        def search(exact: bool) -> list[Hit]:
            params = qe.SearchParams(exact=exact, hnsw_ef=HNSW_EF)
            if formula is None:
                query, prefetches, where = nearest, None, condition
            else:  # the engine rescores the vector query's best candidates
                query, where = _edge_formula(formula), None
                prefetches = [qe.Prefetch(max(k, formula.candidates), query=nearest, filter=condition, params=params)]
            request = qe.QueryRequest(
                limit=k,
                query=query,
                prefetches=prefetches,
                filter=where,
                with_payload=True,
                with_vector=[VECTOR] if with_vectors else False,
                params=params,
            )
            return [self._hit(name, p, with_vectors) for p in shard.query(request)]

        dim = self._meta["collections"][name]["dim"]
        return query_filled(search, use_exact(exact, self.count(name), dim), k, filter)

    def top_by(self, name: str, field_name: str, k: int, filter: Filter | None = None) -> list[Hit]:
        order = qe.OrderBy(field_name, direction=qe.Direction.Desc)
        records, _ = self._shard(name).scroll(
            qe.ScrollRequest(limit=k, filter=_edge_filter(filter, self._exclusions), with_payload=True, order_by=order)
        )
        return [self._hit(name, r, False) for r in records]

    def scroll(self, name: str, batch: int = 1000, with_vectors: bool = False, filter: Filter | None = None) -> Iterable[Hit]:
        offset, condition = None, _edge_filter(filter, self._exclusions)
        while True:
            records, offset = self._shard(name).scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=batch,
                    filter=condition,
                    with_payload=True,
                    with_vector=[VECTOR] if with_vectors else False,
                )
            )
            yield from (self._hit(name, r, with_vectors) for r in records)
            if offset is None:
                return

    def count(self, name: str, filter: Filter | None = None) -> int:
        if filter:
            return self._shard(name).count(qe.CountRequest(exact=True, filter=_edge_filter(filter, self._exclusions)))
        value = self._counts.get(name)
        if value is None:
            value = self._counts[name] = self._shard(name).info().points_count
        return value

    def finish_bulk_load(self, name: str) -> None:
        shard = self._shard(name)
        shard.optimize()
        shard.flush()

    def close(self) -> None:
        with self._guard:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
            self._lock.release()

    # internals ---------------------------------------------------------------------------------
    def _shard(self, name: str) -> qe.EdgeShard:
        shard = self._shards.get(name)
        if shard is None:
            with self._guard:
                shard = self._shards.get(name)
                if shard is None:
                    if not self.has_collection(name):
                        raise ConfigError(f"Collection {name!r} does not exist in {str(self.path)!r}.")
                    shard = self._shards[name] = qe.EdgeShard.load(str(self.path / name))
        return shard

    def _bool_fields(self, name: str) -> set[str]:
        if name not in self._bools:
            indexes = self._meta["collections"][name]["indexes"]
            self._bools[name] = {f for f, kind in indexes.items() if kind == "bool"}
        return self._bools[name]

    def _hit(self, name: str, point: Any, with_vectors: bool) -> Hit:
        vector = None
        if with_vectors:
            vectors = point.vector  # each attribute read converts from the engine: read once
            if vectors is not None:
                vector = np.asarray(vectors[VECTOR], dtype=np.float32)
        payload = point.payload or {}
        bools = self._bool_fields(name)
        if bools:
            for field_name in bools & payload.keys():
                if isinstance(payload[field_name], int):
                    payload[field_name] = bool(payload[field_name])
        return Hit(str(point.id), payload, float(getattr(point, "score", 0.0)), vector)

    def _save_meta(self) -> None:
        atomic_write_json(self.path / _META_FILE, self._meta)


_REWRITE_SUFFIX = ".rewrite"
_REPLACED_SUFFIX = ".replaced"


def _finish_rewrite(live: Path) -> None:
    """Finish or undo a collection rewrite cut short by a crash (see `EdgeStore.rewrite`)."""
    target = live.with_name(live.name + _REWRITE_SUFFIX)
    old = live.with_name(live.name + _REPLACED_SUFFIX)
    if old.exists() and not live.exists():
        if target.exists():
            os.replace(target, live)  # the fresh copy was complete: it was about to be renamed
        else:
            os.replace(old, live)
    shutil.rmtree(target, ignore_errors=True)
    if live.exists():
        shutil.rmtree(old, ignore_errors=True)


def _parses_and_keeps(line: str, keep: Callable[[dict[str, Any]], bool]) -> bool:
    try:
        return keep(json.loads(line))
    except json.JSONDecodeError:
        return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _version_folders(root: Path) -> list[Path]:
    """Every store folder under `root`: its versions, and `root` itself when it holds a store."""
    folders = [root / VERSIONS_DIR / v for v in version_ids(root)]
    return folders + ([root] if (root / _META_FILE).exists() else [])


def _read_erased(root: Path) -> dict[str, list[str]]:
    """The erasure record (see `ERASED_FILE`); a damaged one is an error, never "nothing erased"."""
    path = root / ERASED_FILE
    erased = read_state_json(
        path, lambda: "It lists the point ids of erased users; restore it from a backup (it holds no personal data)."
    )
    if erased is None:
        return {}
    if not isinstance(erased, dict) or not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in erased.values()):
        raise StateFileError(
            f"{str(path)!r} is not an erasure record; expected {{\"users\": [\"<point id>\", ...]}}. Restore "
            "it from a backup (it holds no personal data)."
        )
    return erased


def begin_rebuild(root: str | Path, version: str) -> None:
    """Announce that `version` is being built from the live one: from now on, serving processes
    also log their user writes for it (see `CHANGES_DIR`). Call before reading the live users."""
    atomic_write_json(Path(root) / REBUILD_FILE, {"version": version})


def end_rebuild(root: str | Path) -> None:
    """After the switch: writers still on the old version notice the moved pointer instead."""
    Path(root, REBUILD_FILE).unlink(missing_ok=True)


def is_store(path: str | Path) -> bool:
    """Whether a folder holds an embedded store (plain or versioned)."""
    path = Path(path)
    return (path / _META_FILE).is_file() or (path / POINTER_FILE).is_file() or (path / VERSIONS_DIR).is_dir()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _bools_to_ints(payload: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    if not fields & payload.keys():
        return payload
    return {k: int(v) if k in fields and isinstance(v, bool) else v for k, v in payload.items()}


def _edge_condition(condition: Condition) -> Any:
    if condition.op == "empty":
        return qe.IsEmptyCondition(condition.field)
    if condition.op == "nonempty":
        return qe.Filter(must_not=[qe.IsEmptyCondition(condition.field)])
    if condition.op == "eq":
        value = int(condition.value) if isinstance(condition.value, bool) else condition.value
        return qe.FieldCondition(condition.field, match=qe.MatchValue(value))
    if condition.op == "any":
        return qe.FieldCondition(condition.field, match=qe.MatchAny(condition.value))
    if any(isinstance(v, str) for v in condition.value.values()):
        return qe.FieldCondition(condition.field, range=qe.RangeDateTime(**condition.value))
    return qe.FieldCondition(condition.field, range=qe.RangeFloat(**condition.value))


def _edge_formula(formula: ScoreFormula) -> qe.Formula:
    E = qe.Expression
    terms = [E.Variable("$score")]
    terms += [E.Mult([E.Constant(float(w)), E.Variable(f)]) for f, w in formula.boosts]
    defaults: dict[str, Any] = {f: 0 for f, _ in formula.boosts}
    if formula.decay_field and formula.decay_weight:
        decay = E.Decay(
            _DECAYS[formula.decay_kind], E.DatetimeKey(formula.decay_field), E.Datetime(formula.decay_target),
            0.5, float(formula.decay_scale_s),
        )
        terms.append(E.Mult([E.Constant(float(formula.decay_weight)), decay]))
        defaults[formula.decay_field] = "1970-01-01T00:00:00Z"  # undated: as old as can be
    return qe.Formula(E.Sum(terms), defaults)


class ExclusionCache(LRUCache):
    """Recently built id-exclusion conditions, by their ids. Building one parses every UUID
    string (about 3 µs each: 0.5 ms for a 150-item history), and a user's `seen` list is the
    same from one call to the next until their next event."""

    def __init__(self, size: int = 256) -> None:
        super().__init__(size)

    def __call__(self, ids: Sequence[str]) -> qe.HasIdCondition:
        key = tuple(ids)
        condition = self.touch(key)
        return condition if condition is not None else self.put(key, qe.HasIdCondition(set(key)))


def _edge_filter(filter: Filter | None, exclusions: ExclusionCache) -> qe.Filter | None:
    if not filter:
        return None
    must_not = [exclusions(filter.exclude_ids)] if filter.exclude_ids else None
    must = [_edge_condition(c) for c in filter.must]
    if filter.only_ids is not None:
        must.append(qe.HasIdCondition(set(filter.only_ids)))
    should = [_edge_condition(c) for c in filter.should] or None
    return qe.Filter(must=must or None, should=should, must_not=must_not)
