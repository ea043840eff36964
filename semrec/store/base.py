"""The `VectorStore` protocol shared by the embedded (Qdrant Edge) and server (qdrant-client) backends."""

from __future__ import annotations

import math
import numbers
import re
import threading
import uuid
from datetime import datetime, timezone
from collections import OrderedDict
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Protocol, Sequence

import numpy as np

from ..errors import ConfigError

_NAMESPACE = uuid.UUID("6f1c1b0e-5a8e-4d0c-9b9a-5e6d2c1f7a10")

#: Payload index kinds, named the same in both backends.
IndexKind = Literal["keyword", "integer", "float", "bool", "datetime"]
#: How `upsert` treats existing and new points (Qdrant's update modes).
UpdateMode = Literal["upsert", "insert_only", "update_only"]

#: Up to this many stored vector components (points x dimensions, ~30 MB of float32), queries
#: are exact (brute force); above, HNSW: 20,000 points of 384 dimensions, ~8,500 of 897.
EXACT_SEARCH_MAX_CELLS = 20_000 * 384
#: HNSW search breadth (None: Qdrant's default, the index's ef_construct). On MovieLens's 9.7k
#: items with the hybrid layout, top-10 overlap with exact search was 0.94 at the default, 0.95
#: at 128, 0.96 at 256 and 0.97 at 512; 256 cost ~2 ms more per query at 10k and 100k items.
HNSW_EF: int | None = None


class LRUCache:
    """The `size` most recently used entries of a mapping, safe to share between threads: for
    in-process copies of what a store holds. Whoever writes the store calls `invalidate` (or
    `clear`) for what it changed; a reader that read the store before such a write must not put
    its stale copy back, so readers take `generation` before reading and pass it to `put`.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.generation = 0
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Any) -> bool:
        return key in self._entries

    def touch(self, key: Any) -> Any:
        """The value of `key` (now the most recent), or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Any, value: Any, generation: int | None = None) -> Any:
        """Keep `value` as the most recent entry (unless an invalidation happened since
        `generation` was read), dropping the oldest beyond `size`. Returns `value`."""
        with self._lock:
            if generation is not None and generation != self.generation:
                return value
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def invalidate(self, keys: Iterable[Any]) -> None:
        """Drop `keys` (before and after a write that changes them)."""
        with self._lock:
            self.generation += 1
            for key in keys:
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


@lru_cache(maxsize=1_000_000)
def point_id(kind: str, key: str) -> str:
    """The Qdrant point id (a UUID string) of an item or user id: explicit and stable."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


@dataclass
class Hit:
    """A stored point, with its score when it came from a query."""

    id: str
    payload: dict[str, Any]
    score: float = 0.0
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Condition:
    """One filter condition: `field` equals / is any of / lies in a range."""

    field: str
    op: Literal["eq", "any", "range", "empty", "nonempty"]
    value: Any = None


@dataclass
class Filter:
    """A backend-neutral filter: all `must` conditions and at least one `should` condition (when
    any) hold; `exclude_ids` are left out; when `only_ids` is set, only those points match."""

    must: list[Condition] = field(default_factory=list)
    exclude_ids: list[str] = field(default_factory=list)
    only_ids: list[str] | None = None
    should: list[Condition] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.must or self.exclude_ids or self.only_ids is not None or self.should)


_RANGE_KEYS = {"gt", "gte", "lt", "lte"}
#: A filterable field: keys of letters, digits, '_' or '-', joined by '.' for a nested field,
#: each optionally followed by [] or [n] (Qdrant's JSON path, without quoted keys).
_FIELD_PATH = re.compile(r"[\w-]+(?:\[\d*\])*(?:\.[\w-]+(?:\[\d*\])*)*")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_INT64 = (-(2**63), 2**63 - 1)


def parse_filter(spec: dict[str, Any] | None, field_aliases: dict[str, str] | None = None) -> Filter:
    """Turn a filter dict into a `Filter`, checked so that the engine never sees a value it
    cannot take.

    `{"brand": "Acme"}` matches a value (text, a 64-bit integer or a bool), `{"tags": ["a", "b"]}`
    any of the values (all text or all integers), `{"price": {"gte": 10, "lt": 50}}` a range of
    finite numbers (bools and text are refused). Field names use letters, digits, '_' and '-'
    ('.' for a nested field). Anything else (NaN or inf in a range, an empty field name, a lone
    surrogate, an integer beyond 64 bits) raises `ConfigError` naming the field, the value and
    the fix.

    Example:
        >>> parse_filter({"price": {"lt": 5}}).must[0]
        Condition(field='price', op='range', value={'lt': 5.0})
    """
    result = Filter()
    if not spec:
        return result
    if not isinstance(spec, dict):
        raise ConfigError(
            f"filter must be a dict such as {{'category': 'Kitchen'}}, got {type(spec).__name__} "
            f"{_short(spec)}."
        )
    aliases = field_aliases or {}
    for key, value in spec.items():
        _check_field(key)
        name = aliases.get(key, key)
        if isinstance(value, dict):
            unknown = set(value) - _RANGE_KEYS
            if unknown or not value:
                raise ConfigError(
                    f"filter on {key!r} has range keys {sorted(map(str, value))}; expected some of "
                    f"{sorted(_RANGE_KEYS)}, e.g. {{'{key}': {{'gte': 10, 'lt': 50}}}}."
                )
            result.must.append(Condition(name, "range", {op: _range_bound(key, op, v) for op, v in value.items()}))
        elif isinstance(value, (list, tuple, set, frozenset)):
            values = [_match_value(key, v, "list value") for v in value]
            kinds = {type(v) is str for v in values}
            if not values or len(kinds) > 1:
                raise ConfigError(
                    f"filter on {key!r} has values {_short(list(value))}; expected a non-empty list "
                    f"of all strings or all integers, e.g. {{'{key}': ['a', 'b']}}."
                )
            result.must.append(Condition(name, "any", values))
        else:
            result.must.append(Condition(name, "eq", _match_value(key, value, "value")))
    return result


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - an int too long to print, a broken __repr__
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _check_field(key: Any) -> None:
    """A filter's field name: non-empty text the engine reads as a field path."""
    example = "e.g. {'price': {'lt': 50}} or {'category': 'Kitchen'}"
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(f"filter field {_short(key)} is not a field name; expected a catalog field, {example}.")
    bad = _SURROGATE.search(key)
    if bad:
        raise ConfigError(
            f"filter field {_short(key)} is not valid Unicode text (lone surrogate {bad.group()!r} "
            f"at character {bad.start()}); expected a catalog field, {example}."
        )
    if not _FIELD_PATH.fullmatch(key):
        raise ConfigError(
            f"filter field {_short(key)} is not a name the store can filter on; field names use "
            f"letters, digits, '_' and '-' ('.' for a nested field), {example}."
        )


def _range_bound(key: str, op: Any, value: Any) -> float | str:
    """One end of a range: a finite number (not a bool), or a date as ISO-8601 text
    ("2026-11-01" or "2026-11-01T08:00:00Z", returned as UTC "YYYY-MM-DDTHH:MM:SSZ")."""
    if isinstance(value, str) and (date := iso_datetime(value)) is not None:
        return date
    number = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            number = math.inf
    if not math.isfinite(number):
        raise ConfigError(
            f"filter on {key!r} has range value {_short(value)} for {op!r}; expected a finite "
            f"number or an ISO date, e.g. {{{key!r}: {{{op!r}: 50}}}} or {{{key!r}: {{{op!r}: '2026-11-01'}}}}."
        )
    return number


def _match_value(key: str, value: Any, what: str) -> str | int | bool:
    """A value to match exactly: text (valid Unicode), a 64-bit integer or a bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        number = int(value)
        if _INT64[0] <= number <= _INT64[1]:
            return number
        raise ConfigError(
            f"filter on {key!r} has {what} {_short(value)}, outside "
            "the 64-bit integer range the store matches; use a smaller number or a range."
        )
    if isinstance(value, str):
        bad = _SURROGATE.search(value)
        if bad:
            raise ConfigError(
                f"filter on {key!r} has {what} {_short(value)} with a lone surrogate "
                f"{bad.group()!r} at character {bad.start()}, which is not valid Unicode; "
                "remove it (or decode the input with errors='replace')."
            )
        return value
    raise ConfigError(
        f"filter on {key!r} has {what} {_short(value)}; expected a string, integer, bool, list, "
        f"or a range dict such as {{'{key}': {{'gte': 10, 'lt': 50}}}}."
    )


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def iso_datetime(text: str) -> str | None:
    """`text` as a UTC ISO-8601 time ("YYYY-MM-DDTHH:MM:SSZ") when it is an ISO date or
    date-time (a zone-less time is UTC), else None.

    Example:
        >>> iso_datetime("2026-11-01"), iso_datetime("soon")
        ('2026-11-01T00:00:00Z', None)
    """
    if not _ISO_DATE.match(text):
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ScoreFormula:
    """Business rules the engine applies while ranking: the final score is

        score + sum(weight x field) + decay_weight x decay(date field, around `decay_target`)

    computed by the engine over the best `candidates` points of the vector query (a missing
    field counts 0; decay is 1 at the target time, 0.5 at `decay_scale_s` seconds from it).
    """

    boosts: tuple[tuple[str, float], ...] = ()
    #: Boosted fields holding true/false (they count 1 when true).
    bool_fields: tuple[str, ...] = ()
    decay_field: str | None = None
    decay_target: str | None = None
    decay_scale_s: float = 30 * 86400.0
    decay_weight: float = 0.0
    decay_kind: Literal["exp", "gauss", "lin"] = "exp"
    candidates: int = 200


class VectorStore(Protocol):
    """Named collections of (id, vector, payload) points with dot-product search."""

    #: "edge" or "qdrant"
    kind: str

    def has_collection(self, name: str) -> bool: ...

    def create_collection(self, name: str, dim: int, metadata: dict[str, Any]) -> None:
        """Create an empty collection whose vectors have `dim` dimensions."""

    def collection_metadata(self, name: str) -> dict[str, Any]: ...

    def create_payload_index(self, name: str, field_name: str, kind: IndexKind) -> None:
        """Index a payload field for filtering (idempotent); call before bulk loads."""

    def payload_indexes(self, name: str) -> set[str]: ...

    def payload_index_kinds(self, name: str) -> dict[str, IndexKind | None]:
        """Indexed fields and the kind of values each holds (None where not recorded)."""

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        *,
        only_if: Filter | None = None,
        mode: UpdateMode = "upsert",
    ) -> None:
        """Write points. `only_if`: existing points are replaced only where they match it
        (compare-and-swap; the engine skips the others silently: read back to detect it);
        `mode`: "insert_only" never replaces, "update_only" never inserts."""

    def set_payload(self, name: str, ids: Sequence[str], payload: dict[str, Any], *, only_if: Filter | None = None) -> None:
        """Merge `payload` into the points among `ids` (that also match `only_if`, when given)."""

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, with_payload: bool | Sequence[str] = True
    ) -> list[Hit]:
        """The stored points among `ids`, in the order of `ids` (missing ids are skipped), with
        their whole payload, none of it, or only the fields named in `with_payload`."""

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
        """The k points with the largest dot product (exact when `exact` or the set is small;
        k points whenever k match the filter), rescored by `formula` when given."""

    def top_by(self, name: str, field_name: str, k: int, filter: Filter | None = None) -> list[Hit]:
        """The k points with the largest value of a numeric payload field (indexed)."""

    def scroll(self, name: str, batch: int = 1000, with_vectors: bool = False, filter: Filter | None = None) -> Iterable[Hit]: ...

    def count(self, name: str, filter: Filter | None = None) -> int:
        """Points in the collection (exact), or those matching `filter`."""

    def finish_bulk_load(self, name: str) -> None:
        """Build the ANN index after a bulk load."""

    def close(self) -> None: ...


def query_filled(search: Callable[[bool], list[Hit]], exact: bool, k: int, filter: Filter | None) -> list[Hit]:
    """`search(exact)`, then an exact scan when an HNSW walk under a strict filter (e.g. a long
    list of excluded ids) came back with fewer than k points: the scan returns every match."""
    hits = search(exact)
    if not exact and filter and len(hits) < k:
        hits = search(True)
    return hits


def use_exact(exact: bool | None, count: int, dim: int) -> bool:
    """Exact search unless asked otherwise, when the collection's vectors are small."""
    return count * dim <= EXACT_SEARCH_MAX_CELLS if exact is None else exact
