"""The re-index state of one store version: per item, hashes of the encoded text and the payload.

The state is an SQLite file (one transaction per checkpoint: never half-written, cheap to update
at 100k+ items, unlike rewriting a JSON file per batch). Writes follow a journal discipline:

1. `begin(ids)` records the ids of the next batch as *pending* (committed before the store is
   touched);
2. the batch is written to the store and acknowledged (Edge: flushed);
3. `commit(rows, deleted)` records the new hashes and clears *pending*, in one transaction.

After a crash, `recover()` re-derives the pending ids' rows from what the store really holds, so
a batch that reached the store is not encoded again, and one that did not is redone.

A damaged file (truncated, overwritten, another SQLite file) is a `StateFileError` naming it: the
state only records what is in the store, so deleting it is the repair (the next run rebuilds it
from the stored items and re-plans from their content hashes).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..catalog import Item
from ..files import StateFileError
from ..schema import STORE_MANAGED_KEYS

_F = TypeVar("_F", bound=Callable[..., Any])
#: SQLite errors that mean the file itself is damaged or is not a state file (others, such as
#: "database is locked", are raised as they are).
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN", "SQLITE_IOERR_SHORT_READ")
#: The tables of a state file and their columns.
_TABLES = {"meta": {"key", "value"}, "items": {"item_id", "text_hash", "payload_hash"}, "pending": {"item_id"}}

#: Payload keys that do not come from the catalog (kept by the store, not hashed).
UNHASHED_KEYS = STORE_MANAGED_KEYS


def digest(value: Any) -> str:
    """A short, stable hash of a string or a JSON-able value."""
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(value.encode("utf-8"), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Row:
    """What the state knows of one stored item."""

    item_id: str
    text_hash: str
    payload_hash: str


def item_row(item: Item) -> Row:
    """The state row of a catalog item: the exact encoded text, and its payload, hashed apart."""
    return Row(item.item_id, digest(item.text), digest(item.payload()))


def stored_row(payload: dict[str, Any]) -> Row:
    """The state row of a stored point, from its payload (as `item_row` of the item it came from)."""
    catalog_part = {k: v for k, v in payload.items() if k not in UNHASHED_KEYS}
    return Row(str(payload["item_id"]), digest(str(payload.get("text", ""))), digest(catalog_part))


def _guarded(method: _F) -> _F:
    """A `State` method that reports a damaged file as `StateFileError` (naming it)."""

    @functools.wraps(method)
    def call(self: State, *args: Any, **kwargs: Any) -> Any:
        with _damage_is_state_file_error(self.path):
            return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


class State:
    """The state file of one store version.

    Example:
        >>> state = State("/tmp/v1/reindex-state.sqlite")
        >>> state.set_meta("model", {"weights": "ab12"})
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _damage_is_state_file_error(self.path):
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    @_guarded
    def _setup(self) -> None:
        # a truncated file can open and still miss pages: find that now, before the job relies
        # on it, and before anything is written to a file that is not a state file
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise StateFileError(_damaged_message(self.path, "; ".join(problems)))
        tables = {
            name: {row[0] for row in self._db.execute("SELECT name FROM pragma_table_info(?)", (name,))}
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        unexpected = tables.keys() - _TABLES
        if unexpected or any(tables.get(name, columns) != columns for name, columns in _TABLES.items()):
            found = ", ".join(f"{name}({', '.join(sorted(cols))})" for name, cols in sorted(tables.items()))
            raise StateFileError(_damaged_message(self.path, f"it holds other tables: {found}"))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._tx():
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, text_hash TEXT NOT NULL, "
                "payload_hash TEXT NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS pending (item_id TEXT PRIMARY KEY)")

    def close(self) -> None:
        self._db.close()

    # meta --------------------------------------------------------------------------------------
    @_guarded
    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, json.JSONDecodeError):
            raise StateFileError(_damaged_message(self.path, f"meta {key!r} is {row[0]!r}, not JSON")) from None

    @_guarded
    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    # rows --------------------------------------------------------------------------------------
    @_guarded
    def rows(self) -> dict[str, Row]:
        return {r[0]: Row(*r) for r in self._db.execute("SELECT item_id, text_hash, payload_hash FROM items")}

    @_guarded
    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    @_guarded
    def pending(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT item_id FROM pending ORDER BY item_id")]

    @_guarded
    def begin(self, ids: Iterable[str]) -> None:
        """Record the ids of a batch before it is written to the store."""
        with self._tx():
            self._db.executemany("INSERT OR IGNORE INTO pending VALUES (?)", ((i,) for i in ids))

    @_guarded
    def commit(self, rows: Iterable[Row] = (), deleted: Iterable[str] = ()) -> None:
        """Record an acknowledged batch: new rows, deleted ids; clears pending (one transaction)."""
        with self._tx():
            self._db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?)", ((r.item_id, r.text_hash, r.payload_hash) for r in rows))
            self._db.executemany("DELETE FROM items WHERE item_id = ?", ((i,) for i in deleted))
            self._db.execute("DELETE FROM pending")

    @_guarded
    def replace_all(self, rows: Iterable[Row]) -> None:
        """Replace every row (the state rebuilt from the store)."""
        with self._tx():
            self._db.execute("DELETE FROM items")
            self._db.executemany("INSERT INTO items VALUES (?, ?, ?)", ((r.item_id, r.text_hash, r.payload_hash) for r in rows))
            self._db.execute("DELETE FROM pending")

    def _tx(self) -> "_Transaction":
        return _Transaction(self._db)


def read_status(path: str | Path) -> str | None:
    """The `status` meta of a state file ("building", "complete"), read without writing; None when
    the file or the key is absent.

    Raises:
        StateFileError: the file is damaged.
    """
    path = Path(path)
    if not path.is_file():
        return None
    with _damage_is_state_file_error(path):
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
        finally:
            db.close()
    try:
        return None if row is None else json.loads(row[0])
    except (TypeError, json.JSONDecodeError):
        raise StateFileError(_damaged_message(path, f"meta 'status' is {row[0]!r}, not JSON")) from None


def _damaged_message(path: Path, problem: str) -> str:
    return (
        f"Re-index state file {str(path)!r} is damaged ({problem}). It only records what the job "
        f"already wrote, so delete it (with {path.name}-wal and {path.name}-shm beside it, if "
        "present): the next run rebuilds it from the items in the store and re-plans from their "
        "content hashes, re-encoding only what changed (a version still being built is started "
        "afresh)."
    )


@contextlib.contextmanager
def _damage_is_state_file_error(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        if name.startswith(_DAMAGED) or "no such table" in text or "no such column" in text:
            raise StateFileError(_damaged_message(path, text)) from None
        raise


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def chunked(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
