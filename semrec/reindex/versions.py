"""Store versions for blue-green re-indexing, and the atomic switch between them.

Embedded (Qdrant Edge): `<store>/versions/<id>/` are complete store folders and `<store>/CURRENT`
(JSON, written with write + fsync + rename) names the live one and the previous one. Readers open
`<store>` and follow the pointer (`Recommender.refresh()` picks up a switch).

Server (qdrant-client): version `<id>` is the collections `<prefix>_items_<id>` and
`<prefix>_users_<id>`; the aliases `<prefix>_items` / `<prefix>_users` name the live ones and
are switched in one `update_collection_aliases` call (atomic on the server). The previous
version is recorded in the live items collection's metadata (`semrec_previous`).

Both keep the previous version for `rollback()`; `cleanup()` never deletes a version that a
pointer or alias names (nor, embedded, one still opened by a reader). Embedded, a missing or
damaged `CURRENT` stops every job with a `StateFileError` before anything is written or deleted:
a folder whose versions lost their pointer is never taken for an empty store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError, StoreLockedError
from ..files import (
    LEGACY_VERSION,
    META_FILE,
    POINTER_FILE,
    FolderLock,
    StateFileError,
    atomic_write_json,
    atomic_write_text,
    live_version_folder,
    missing_pointer_error,
    read_pointer,
    read_store_meta,
    store_folder,
    version_ids,
    version_path,
)
from ..store.edge import EdgeStore
from ..store.qdrant import COLLECTION_PREFIX, QdrantStore
from .state import read_status
from .upload import UploadConfig

log = logging.getLogger(__name__)

ITEMS, USERS = "items", "users"
STATE_FILE = "reindex-state.sqlite"
#: In a version folder a re-index opened to build: it was never switched to, so a missing CURRENT
#: says nothing about it (the switch removes the file).
BUILD_MARKER = "BUILDING"
_VERSION = re.compile(r"^v(\d{4,})$")


def _next_id(existing: list[str]) -> str:
    numbers = [int(m.group(1)) for v in existing if (m := _VERSION.match(v))]
    return f"v{max(numbers, default=0) + 1:04d}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class _JobLock:
    """One re-index job at a time per store (an flock on a file; released on exit or crash)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder / "reindex-job"
        self.folder.mkdir(exist_ok=True)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        try:
            lock = FolderLock(self.folder)
        except StoreLockedError as exc:
            raise StoreLockedError(
                f"Another re-index job is running on this store ({exc}); wait for it to finish."
            ) from None
        try:
            yield
        finally:
            lock.release()


class EdgeTarget:
    """The versions of an embedded store folder.

    Example:
        >>> target = EdgeTarget("shop-store")
        >>> target.live()          # None (empty), "." (a plain folder), or "v0003"
    """

    kind = "edge"

    def __init__(self, root: str | Path) -> None:
        self.root = store_folder(root)
        self._lock = _JobLock(self.root)

    def job_lock(self):
        return self._lock.hold()

    def pointer(self) -> dict[str, Any] | None:
        return read_pointer(self.root)

    def live(self) -> str | None:
        """The live version: CURRENT's, else "." for a plain store with data, else None (empty).

        Raises:
            StateFileError: CURRENT is damaged or names no complete version, or is missing while
                a version that may have been live (any but an unswitched build) is in versions/.
        """
        return self._live()

    def _live(self, building: str | None = None) -> str | None:
        pointer = self.pointer()
        if pointer:
            live_version_folder(self.root, pointer["version"])  # it exists and holds a store
            return pointer["version"]
        if any(self._may_have_been_live(v) for v in self.versions() if v != building):
            raise missing_pointer_error(self.root)
        meta = read_store_meta(self.root)
        return LEGACY_VERSION if meta["collections"] else None

    def _may_have_been_live(self, version: str) -> bool:
        """False only for what a build leaves before its switch: a folder with no data yet, or
        one marked as a build (`BUILD_MARKER`, or a state that says "building"); a damaged
        state counts as live."""
        path = version_path(self.root, version)
        if (path / BUILD_MARKER).exists():
            return False
        if not (path / META_FILE).exists() and not any(p.is_dir() for p in path.iterdir()):
            return False
        try:
            return read_status(path / STATE_FILE) != "building"
        except StateFileError:
            return True

    def previous(self) -> str | None:
        pointer = self.pointer()
        return pointer.get("previous") if pointer else None

    def versions(self) -> list[str]:
        return version_ids(self.root)

    def new_version(self) -> str:
        return _next_id(self.versions())

    def state_path(self, version: str) -> Path:
        return version_path(self.root, version) / STATE_FILE

    def open(self, version: str) -> EdgeStore:
        """Open one version's folder (taking its lock; `StoreLockedError` if a reader holds it).
        Any version but the live one is marked as a build until it is switched to."""
        path = version_path(self.root, version)
        path.mkdir(parents=True, exist_ok=True)
        if version != self._live(building=version) and not (path / BUILD_MARKER).exists():
            atomic_write_text(path / BUILD_MARKER, "A re-index builds this version; its switch removes this file.\n")
        return EdgeStore(path)

    def release(self, store: Any) -> None:
        store.close()

    def collection_metadata(self, version: str, name: str = ITEMS) -> dict[str, Any] | None:
        meta = read_store_meta(version_path(self.root, version))
        entry = meta["collections"].get(name)
        return dict(entry["metadata"]) if entry else None

    def read_profiles(self, version: str) -> list[dict[str, Any]]:
        """Every user profile (payload) of a version. When a reader holds the version, its users
        shard is read from a copy (a crash-consistent snapshot: Qdrant's WAL makes it whole)."""
        if self.collection_metadata(version, USERS) is None:
            return []
        path = version_path(self.root, version)
        try:
            store = EdgeStore(path)
        except StoreLockedError:
            return _profiles_from_copy(path / USERS)
        try:
            return [h.payload for h in store.scroll(USERS)]
        finally:
            store.close()

    def switch(self, version: str) -> None:
        """Make `version` live: CURRENT is replaced atomically (write, fsync, rename)."""
        if not (version_path(self.root, version) / META_FILE).is_file():
            raise ConfigError(
                f"Version {version!r} of store {str(self.root)!r} holds no {META_FILE} (it is not "
                "a complete store folder), so CURRENT is not pointed at it."
            )
        live = self._live(building=version)
        atomic_write_json(
            self.root / POINTER_FILE,
            {"version": version, "previous": live if live != version else self.previous(), "switched_at": _now()},
        )
        (version_path(self.root, version) / BUILD_MARKER).unlink(missing_ok=True)
        log.info("store %s: version %s is live (previous %s)", self.root, version, live)

    def rollback(self) -> str:
        """Make the previous version live again (the current one becomes the previous)."""
        pointer = self.pointer()
        if pointer is None:
            self.live()  # CURRENT lost while versions exist: StateFileError, not "no previous"
        previous = pointer.get("previous") if pointer else None
        if not previous or not (version_path(self.root, previous) / META_FILE).is_file():
            raise ConfigError(
                f"Store {str(self.root)!r} has no previous version to roll back to "
                f"(CURRENT: {pointer}). A rollback needs a completed blue-green re-index first."
            )
        atomic_write_json(
            self.root / POINTER_FILE, {"version": previous, "previous": pointer["version"], "switched_at": _now()}
        )
        return previous

    def cleanup(self, keep: set[str] = frozenset()) -> list[str]:
        """Delete versions that no pointer names and no reader holds; returns those deleted.

        Deletes nothing unless CURRENT is readable and names a complete version: without a
        pointer no version is known to be unused (`StateFileError` when one may hold data).
        """
        pointer = self.pointer()
        if pointer is None:
            self.live()  # raises when a version may hold data
            return []
        live_version_folder(self.root, pointer["version"])
        protected = {pointer["version"], pointer.get("previous"), *keep}
        for version in protected & set(self.versions()):  # a marker a crash left after a switch
            (version_path(self.root, version) / BUILD_MARKER).unlink(missing_ok=True)
        removed = []
        for version in self.versions():
            if version in protected:
                continue
            path = version_path(self.root, version)
            try:
                lock = FolderLock(path)
            except StoreLockedError:
                continue  # a reader still has it open: next time
            lock.release()
            shutil.rmtree(path, ignore_errors=True)
            removed.append(version)
        return removed


class ServerTarget:
    """The versions of a store on a Qdrant server (or qdrant-client's local mode, for tests).

    `base` is the store opened on the live names; its client serves every version.

    Example:
        >>> target = open_target("http://localhost:6333")  # a ServerTarget
    """

    kind = "qdrant"

    def __init__(self, url: str, base: QdrantStore, *, state_dir: str | Path | None = None) -> None:
        self.url, self.prefix = url, base.prefix
        self.client, self.local = base.client, base.local
        if state_dir is None:
            if self.local and url != ":memory:":
                state_dir = Path(url) / "semrec-reindex" / self.prefix
            else:
                slug = hashlib.blake2b(f"{url}|{self.prefix}".encode(), digest_size=6).hexdigest()
                state_dir = Path.home() / ".cache" / "semrec" / "reindex" / f"{self.prefix}-{slug}"
        self.state_dir = Path(state_dir)
        self._lock = _JobLock(self.state_dir)

    def job_lock(self):
        return self._lock.hold()

    def _alias(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def _collection(self, name: str, version: str) -> str:
        return self._alias(name) if version == LEGACY_VERSION else f"{self.prefix}_{name}_{version}"

    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def live(self) -> str | None:
        target = self._aliases().get(self._alias(ITEMS))
        if target:
            return target[len(self._alias(ITEMS)) + 1 :]
        names = {c.name for c in self.client.get_collections().collections}
        return LEGACY_VERSION if self._alias(ITEMS) in names else None

    def previous(self) -> str | None:
        live = self.live()
        meta = self.collection_metadata(live) if live else None
        return (meta or {}).get("semrec_previous")

    def versions(self) -> list[str]:
        head = self._alias(ITEMS) + "_"
        names = [c.name for c in self.client.get_collections().collections]
        return sorted(n[len(head) :] for n in names if n.startswith(head) and _VERSION.match(n[len(head) :]))

    def new_version(self) -> str:
        return _next_id(self.versions())

    def state_path(self, version: str) -> Path:
        return self.state_dir / f"{'legacy' if version == LEGACY_VERSION else version}.sqlite"

    def open(self, version: str) -> QdrantStore:
        return QdrantStore(self.url, prefix=self.prefix, client=self.client, version=None if version == LEGACY_VERSION else version)

    def release(self, store: Any) -> None:
        """The client is shared by the versions: closed with the target."""

    def close(self) -> None:
        self.client.close()

    def collection_metadata(self, version: str, name: str = ITEMS) -> dict[str, Any] | None:
        collection = self._collection(name, version)
        if not self.client.collection_exists(collection):
            return None
        return dict(self.client.get_collection(collection).config.metadata or {})

    def read_profiles(self, version: str) -> list[dict[str, Any]]:
        store = self.open(version)
        return [h.payload for h in store.scroll(USERS)] if store.has_collection(USERS) else []

    def switch(self, version: str) -> None:
        """Point the aliases at `version` in one atomic request; record the previous version."""
        from qdrant_client import models

        live = self.live()
        if live == LEGACY_VERSION:
            raise ConfigError(
                f"Collection {self._alias(ITEMS)!r} is a plain collection, so it cannot become an "
                "alias for a blue-green switch. Re-index into a new prefix (--prefix) and point "
                "readers at it, or delete the plain collections first."
            )
        if live and live != version:
            meta = self.collection_metadata(version) or {}
            self.client.update_collection(self._collection(ITEMS, version), metadata={**meta, "semrec_previous": live})
        aliases = self._aliases()
        operations: list[Any] = []
        for name in (ITEMS, USERS):
            alias, collection = self._alias(name), self._collection(name, version)
            if alias in aliases:
                operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            if self.client.collection_exists(collection):
                operations.append(
                    models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
                )
        self.client.update_collection_aliases(change_aliases_operations=operations)
        log.info("%s: version %s is live (previous %s)", self.url, version, live)

    def rollback(self) -> str:
        live, previous = self.live(), self.previous()
        if not live or not previous or previous not in self.versions():
            raise ConfigError(
                f"Store {self.url!r} (prefix {self.prefix!r}) has no previous version to roll back "
                "to. A rollback needs a completed blue-green re-index first."
            )
        self.switch(previous)
        return previous

    def cleanup(self, keep: set[str] = frozenset()) -> list[str]:
        protected = {self.live(), self.previous(), *keep}
        removed = []
        for version in self.versions():
            if version in protected:
                continue
            for name in (ITEMS, USERS):
                collection = self._collection(name, version)
                if self.client.collection_exists(collection):
                    self.client.delete_collection(collection)
            self.state_path(version).unlink(missing_ok=True)
            removed.append(version)
        return removed


def open_target(
    store: str | Path,
    *,
    prefix: str = COLLECTION_PREFIX,
    api_key: str | None = None,
    timeout: float = UploadConfig.model_fields["timeout_s"].default,
    client: Any = None,
    state_dir: str | Path | None = None,
) -> EdgeTarget | ServerTarget:
    """`store` is an embedded store folder, or a Qdrant URL (http(s)://...). With `client`
    (a `QdrantClient`, e.g. local mode in tests) `store` names it for messages and state."""
    text = str(store)
    if client is not None or text.startswith(("http://", "https://")) or text == ":memory:":
        base = QdrantStore(text, prefix=prefix, api_key=api_key, timeout=timeout, client=client)
        return ServerTarget(text, base, state_dir=state_dir)
    return EdgeTarget(store)


def _profiles_from_copy(users_shard: Path) -> list[dict[str, Any]]:
    import qdrant_edge as qe

    with tempfile.TemporaryDirectory(prefix="semrec-users-") as tmp:
        copy = Path(tmp) / "users"
        shutil.copytree(users_shard, copy)
        shard = qe.EdgeShard.load(str(copy))
        try:
            profiles, offset = [], None
            while True:
                records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=1000, with_payload=True))
                profiles.extend(r.payload for r in records)
                if offset is None:
                    return profiles
        finally:
            shard.close()
