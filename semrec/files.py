"""Crash-safe file writes, folder locks, and the checked reading of a store's state files.

An embedded store folder holds `semrec.json` (its collections: dimension, metadata, payload
indexes) beside one shard folder per collection; a versioned one holds `versions/<id>/` (each a
complete store folder) and `CURRENT` naming the live one. Those files are read here and only
here: a damaged or missing one is a `StateFileError` naming the file, what is wrong and the repair,
never an empty store, and a version id read from a file never leads outside the store folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, StoreLockedError, StateFileError

#: `CURRENT` (JSON: {"version": id, "previous": id}) names the live folder under `versions/<id>/`;
#: the id "." names the store folder itself (a store indexed before it was versioned).
POINTER_FILE = "CURRENT"
VERSIONS_DIR = "versions"
META_FILE = "semrec.json"
LEGACY_VERSION = "."
VERSION_ID = re.compile(r"^v\d{4,}$")
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: What a Qdrant Edge shard folder holds (any one is enough to call a folder a shard).
_SHARD_MARKERS = ("edge_config.json", "segments", "wal")


def store_folder(path: str | Path) -> Path:
    """The folder of an embedded store, created if absent (a file there is refused)."""
    root = Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"Store path {str(root)!r} is a file; expected a folder.")
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` so readers see the old or the new file, never half of one (write, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def read_state_json(path: str | Path, repair: Callable[[], str]) -> Any:
    """The JSON value in a state file, or None when the file is absent.

    Raises:
        StateFileError: the file cannot be read, is not UTF-8 text or not JSON; the message
            names the file and ends with `repair()`.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        problem = f"is unreadable ({exc.strerror or exc})"
    else:
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            problem = "is not UTF-8 text (its bytes are damaged)"
        except json.JSONDecodeError as exc:
            problem = (
                "is empty (a truncated write?)" if not raw.strip() else
                f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}; truncated or damaged)"
            )
    raise StateFileError(f"{str(path)!r} {problem}. {repair()}")


def version_path(root: str | Path, version: str) -> Path:
    """The folder of one version of a versioned store (`root` itself for "."), which is always
    inside `root`: an id other than "." or v0001, v0002, ... is refused."""
    root = Path(root)
    if version == LEGACY_VERSION:
        return root
    if not isinstance(version, str) or not VERSION_ID.match(version):
        raise ConfigError(f"Version id {version!r} is not valid; expected \".\" or v0001, v0002, ...")
    path = root / VERSIONS_DIR / version
    # versions/ itself may be a link (to another disk); a version folder in it may not lead out
    if not path.resolve().is_relative_to((root / VERSIONS_DIR).resolve()):
        raise ConfigError(
            f"Version folder {str(path)!r} resolves to {str(path.resolve())!r}, outside "
            f"{str(root / VERSIONS_DIR)!r}; a version folder must not be a link out of the store."
        )
    return path


def version_ids(root: str | Path) -> list[str]:
    """The version folders under `root/versions/` (v0001, v0002, ...; other names are ignored)."""
    folder = Path(root) / VERSIONS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if VERSION_ID.match(p.name) and p.is_dir())


def pointer_repair(root: str | Path) -> str:
    """How to repair a store's `CURRENT`, naming the versions there are to choose from."""
    root = Path(root)
    found = version_ids(root)
    choice = f"one of: {', '.join(found)}" if found else "no version folders found"
    return (
        f"Restore it from a backup, or write {{\"version\": \"<{choice}>\"}} naming the live "
        f"folder under {str(root / VERSIONS_DIR)!r} (normally the newest complete one); "
        "semrec never guesses, so that no version with user profiles is lost."
    )


def missing_pointer_error(root: str | Path) -> StateFileError:
    """The error for a versioned store folder whose `CURRENT` is missing."""
    root = Path(root)
    return StateFileError(
        f"{str(root / POINTER_FILE)!r} is missing, but {str(root / VERSIONS_DIR)!r} holds versions "
        f"({', '.join(version_ids(root))}), so this is a versioned store whose pointer to the live "
        f"version was lost (it is not opened as an empty store). {pointer_repair(root)}"
    )


def read_pointer(root: str | Path) -> dict[str, Any] | None:
    """The `CURRENT` pointer of a versioned store folder (checked), or None when there is none.

    Raises:
        StateFileError: `CURRENT` is unreadable, not JSON, has no str `version`, or names a
            version id that is not "." or v0001, v0002, ... (ids never leave the store folder).
    """
    root = Path(root)
    path = root / POINTER_FILE
    pointer = read_state_json(path, lambda: pointer_repair(root))
    if pointer is None:
        return None
    problem = _pointer_problem(pointer)
    if problem:
        raise StateFileError(f"{str(path)!r} {problem}. {pointer_repair(root)}")
    return pointer


def _object_problem(value: Any, key: str, example: str, missing: str = "") -> str | None:
    """What is wrong with the top level of a state file's JSON: not an object, or without `key`
    (`example` shows the expected object; `missing` says what a missing key means)."""
    if not isinstance(value, dict):
        return f"holds a JSON {type(value).__name__}; expected an object {example}"
    if key not in value:
        return f'has no "{key}" key{missing}'
    return None


def _pointer_problem(pointer: Any) -> str | None:
    """What is wrong with the structure of a `CURRENT` value, or None."""
    problem = _object_problem(
        pointer, "version", '{"version": ..., "previous": ...}', " (it names no live version)"
    )
    if problem:
        return problem
    for key in ("version", "previous"):
        value = pointer.get(key)
        if value is None and key == "previous":
            continue
        if not isinstance(value, str):
            return f'has {key!r} = {value!r} ({type(value).__name__}); expected a str, "." or v0001, v0002, ...'
        if value != LEGACY_VERSION and not VERSION_ID.match(value):
            return (
                f'has {key!r} = {value!r}, which is not a version id ("." or v0001, v0002, ...); a '
                f"version is a folder under {VERSIONS_DIR}/, never outside the store"
            )
    return None


def live_version_folder(root: str | Path, version: str) -> Path:
    """The folder of the version `CURRENT` names: it must exist and hold its `semrec.json`
    (every version a re-index switched to has one).

    Raises:
        StateFileError: the folder or its `semrec.json` is missing.
    """
    root = Path(root)
    path = version_path(root, version)
    if not path.is_dir():
        raise StateFileError(
            f"{str(root / POINTER_FILE)!r} names version {version!r} as live, but {str(path)!r} "
            "is missing. Roll back (semrec reindex --rollback) or re-index; "
            f"{pointer_repair(root)}"
        )
    if not (path / META_FILE).is_file():
        where = "the store folder itself" if version == LEGACY_VERSION else f"version {version!r}"
        raise StateFileError(
            f"{str(path / META_FILE)!r} is missing, but {str(root / POINTER_FILE)!r} names "
            f"{where} as live: it is not a complete store version. {pointer_repair(root)}"
        )
    return path


def live_folder(root: str | Path) -> tuple[str | None, Path]:
    """Where the live data of an embedded store folder is: (version id, versions/<id>) when
    `CURRENT` names one; (None, root) for a plain store or a new, empty folder.

    Raises:
        StateFileError: `CURRENT` is damaged, or missing although `versions/` holds versions
            (and the folder itself holds no store), or names a version that is missing or has
            no `semrec.json`.
    """
    root = Path(root)
    pointer = read_pointer(root)
    if pointer is None:
        if version_ids(root) and not (root / META_FILE).exists():
            raise missing_pointer_error(root)
        return None, root
    return pointer["version"], live_version_folder(root, pointer["version"])


def _meta_repair(folder: Path) -> str:
    return (
        "It is the store's collection metadata (dimensions, model, payload indexes) and cannot be "
        "rebuilt safely from the shards: restore it from a backup, or re-index the catalog into a "
        "new folder (semrec reindex CATALOG --store NEW_FOLDER). A shard folder that a crash left "
        "while its collection was being created holds nothing yet: delete that folder instead. "
        f"Shard folders: {', '.join(shard_folders(folder)) or 'none'}."
    )


def shard_folders(folder: str | Path) -> list[str]:
    """The subfolders of a store folder that hold a Qdrant Edge shard (a collection's data)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and p.name != VERSIONS_DIR and any((p / m).exists() for m in _SHARD_MARKERS)
    )


def read_store_meta(folder: str | Path) -> dict[str, Any]:
    """The collection metadata (`semrec.json`) of one store folder, checked; {"collections": {}}
    for a new folder.

    Raises:
        StateFileError: `semrec.json` is damaged, malformed, or missing (or silent about) shard
            folders (`items/`, `users/`, ...) that hold data: never an empty store over them.
    """
    folder = Path(folder)
    path = folder / META_FILE
    meta = read_state_json(path, lambda: _meta_repair(folder))
    shards = shard_folders(folder)
    if meta is None:
        if shards:
            raise StateFileError(
                f"{str(path)!r} is missing, but {str(folder)!r} holds collection data "
                f"({', '.join(shards)}); it is not opened as an empty store. {_meta_repair(folder)}"
            )
        return {"collections": {}}
    problem = _meta_problem(meta)
    # `<name>.<suffix>/` beside a listed collection is that collection's own work (a rewrite)
    listed = meta["collections"] if problem is None else {}
    unlisted = [n for n in shards if problem is None and n not in listed and n.split(".")[0] not in listed]
    if unlisted:
        problem = f"does not list the collection data in {', '.join(f'{n}/' for n in unlisted)}"
    if problem:
        raise StateFileError(f"{str(path)!r} {problem}. {_meta_repair(folder)}")
    return meta


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with the structure of a `semrec.json` value, or None."""
    problem = _object_problem(meta, "collections", '{"collections": {...}}')
    if problem:
        return problem
    collections = meta["collections"]
    if not isinstance(collections, dict):
        return f'has "collections" of type {type(collections).__name__}; expected an object'
    expected = {"dim": int, "metadata": dict, "indexes": dict}
    for name, entry in collections.items():
        if not _COLLECTION_NAME.match(name):
            return f"names a collection {name!r}, which is not a folder name (letters, digits, _ . -)"
        if not isinstance(entry, dict):
            return f"has collection {name!r} of type {type(entry).__name__}; expected an object"
        for key, kind in expected.items():
            if key not in entry:
                return f"has collection {name!r} without its {key!r} key"
            value = entry[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"has collection {name!r} with {key!r} = {value!r}; expected {kind.__name__}"
        if entry["dim"] < 1:
            return f"has collection {name!r} with dim = {entry['dim']!r}; expected a positive int"
        bad = {f: k for f, k in entry["indexes"].items() if not isinstance(k, str)}
        if bad:
            return f"has collection {name!r} with index kinds {bad!r}; expected str (keyword, integer, ...)"
    return None


class FolderLock:
    """An exclusive, process-wide lock on a folder (released on close or process exit)."""

    def __init__(self, folder: str | Path) -> None:
        import fcntl

        self.path = Path(folder) / ".lock"
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            raise StoreLockedError(
                f"Store folder {str(folder)!r} is already open (held by pid {holder}). The "
                "embedded store allows one process at a time: close the other Recommender, or "
                "serve the store from a Qdrant server (Recommender.open(url=...)) to share it."
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()

    def release(self) -> None:
        import fcntl

        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
