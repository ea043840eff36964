"""The store's schema: collection names, payload keys and indexes, the vector layout, the model.

Every part of a `Recommender` names collections and payload keys through this module, and
creates collections and payload indexes through one `Schema` (under its lock, so two first
writers never both create one). The schema also types filters against the indexes that exist.

Example:
    >>> schema = Schema(store, encoder.fingerprint, RecommenderConfig())
    >>> schema.check_models()                  # ModelMismatchError if the store's model differs
    >>> schema.filter({"category": "Electronics", "price": {"lt": 50}})
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .collaborative import VectorLayout
from .encoders import ModelFingerprint
from .errors import ConfigError, ModelMismatchError
from .store import VectorStore, parse_filter
from .store.base import Condition, Filter, iso_datetime

if TYPE_CHECKING:  # the settings model is defined (and exported) with the facade
    from .catalog import Item
    from .recommender import RecommenderConfig

log = logging.getLogger(__name__)

ITEMS = "items"
USERS = "users"
#: Payload field: an item's interactions at the last `fit_collaborative()` (hybrid stores).
CF_INTERACTIONS = "cf_interactions"
#: Item payload keys the store manages (not catalog fields): kept on re-index, never hashed.
STORE_MANAGED_KEYS = ("popularity", CF_INTERACTIONS)
#: User payload: a random token replaced on every write of the profile. A write is conditional on
#: the token it read (compare-and-swap), so concurrent writers, threads or processes, never
#: overwrite each other's events: the loser re-reads and re-applies.
REVISION = "rev"
#: User payload: items whose popularity the profile's last writes changed, until recounted. A crash
#: between the profile write and the popularity write is repaired from it when a store opens.
PENDING = "pending_items"
#: User payload: set while the user is being erased; an interrupted erasure finishes on open.
ERASING = "erasing"
#: User payload: the vector of the summary text last encoded (float32, base64) and a key of that
#: text and model. A write whose summary text is unchanged needs no encoding, and a write whose
#: summary is encoded later (background summaries) blends the last one with the new history.
SUMMARY_VECTOR = "summary_vector"
SUMMARY_OF = "summary_of"
#: User payload: the key of a summary written but not yet encoded (background summaries); found
#: through its index when a store opens, so a crash never leaves a summary unencoded for good.
SUMMARY_STALE = "summary_stale"
#: User payload fields semrec keeps beside the profile itself.
USER_STATE_KEYS = (REVISION, PENDING, ERASING, SUMMARY_VECTOR, SUMMARY_OF, SUMMARY_STALE)
#: User payload: the profile's own fields but `user_id` and `seen`, as one JSON text. The engine
#: converts a payload value by value (a 50-event history alone costs ~1.6 ms a write); one text
#: costs microseconds. `user_id`, `seen` and the state keys stay fields: they are filtered,
#: counted and indexed. `pack_user` / `unpack_user` are the one place that knows this.
PROFILE = "profile"
_USER_FIELDS = frozenset({"user_id", "seen", *USER_STATE_KEYS})
#: Fields semrec indexes on every item collection.
_BASE_INDEXES = {"item_id": "keyword", "category_levels": "keyword", "tags": "keyword", "popularity": "float"}
_USER_INDEXES = {"seen": "keyword", REVISION: "keyword", PENDING: "keyword", SUMMARY_STALE: "keyword", ERASING: "bool"}

#: A filter on "category" matches the category and every sub-category.
_FILTER_ALIASES = {"category": "category_levels"}


def pack_user(payload: dict[str, Any]) -> dict[str, Any]:
    """A user payload as stored: its fields (a profile's `model_dump()` plus state keys) with
    the profile's own fields but `user_id` and `seen` folded into one JSON text (PROFILE)."""
    stored = {k: v for k, v in payload.items() if k in _USER_FIELDS}
    stored[PROFILE] = json.dumps({k: v for k, v in payload.items() if k not in _USER_FIELDS}, ensure_ascii=False)
    return stored


def unpack_user(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored user payload with its profile fields unfolded (payloads stored before PROFILE
    existed, with every field apart, are returned as they are)."""
    if PROFILE not in payload:
        return payload
    fields = {k: v for k, v in payload.items() if k != PROFILE}
    fields.update(json.loads(payload[PROFILE]))
    return fields


class Schema:
    """What a store's collections hold and how they are made; owns the cached vector layout.

    Args:
        store: the vector store.
        fingerprint: the model whose vectors are written (stamped on new collections, checked
            against existing ones).
        config: the template and collaborative dimension of new collections.
    """

    def __init__(self, store: VectorStore, fingerprint: ModelFingerprint, config: RecommenderConfig) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.config = config
        self._layout: VectorLayout | None = None
        self._lock = threading.RLock()  # collection and payload-index creation

    @property
    def layout(self) -> VectorLayout:
        """How the stored vectors are laid out: fixed when the item collection is created."""
        if self._layout is None:
            if not self.store.has_collection(ITEMS):
                return VectorLayout(self.fingerprint.dim, self.config.collaborative.dim)
            self._layout = VectorLayout.from_metadata(self.store.collection_metadata(ITEMS), self.fingerprint.dim)
        return self._layout

    def forget_cached(self) -> None:
        """Read the layout again (the store switched to another version)."""
        self._layout = None

    def check_models(self) -> None:
        """Raise `ModelMismatchError` unless the stored collections were made by this model."""
        for name in (ITEMS, USERS):
            if not self.store.has_collection(name):
                continue
            stored = ModelFingerprint.from_dict(self.store.collection_metadata(name)["model"])
            if not stored.compatible_with(self.fingerprint):
                raise ModelMismatchError(
                    f"This store's {name} were encoded with {stored.describe()}, but the encoder in use "
                    f"is {self.fingerprint.describe()}. Open the store with model={stored.name!r}, or re-index "
                    "the catalog into a new store (semrec reindex --rebuild) to switch models."
                )

    def ensure_collection(self, name: str) -> None:
        """Create `name` (ITEMS or USERS) with its payload indexes unless it exists; an existing
        hybrid item collection gets the interactions index (stores made before it existed)."""
        with self._lock:  # two first writers must not both create it
            if self.store.has_collection(name):
                if name == ITEMS and self.layout.hybrid and CF_INTERACTIONS not in self.store.payload_indexes(ITEMS):
                    self.store.create_payload_index(ITEMS, CF_INTERACTIONS, "float")
                return
            layout = self.layout
            metadata = {"model": self.fingerprint.to_dict(), "template": self.config.template, "layout": layout.to_dict()}
            self.store.create_collection(name, layout.item_dim if name == ITEMS else layout.user_dim, metadata)
            if name == ITEMS:
                for field_name, kind in _BASE_INDEXES.items():
                    self.store.create_payload_index(ITEMS, field_name, kind)
                if layout.hybrid:
                    self.store.create_payload_index(ITEMS, CF_INTERACTIONS, "float")
            else:
                self.index_users()

    def index_users(self) -> None:
        """Index the user fields the write path filters on (also on stores made before they existed)."""
        with self._lock:
            known = self.store.payload_indexes(USERS)
            for field_name, kind in _USER_INDEXES.items():
                if field_name not in known:
                    self.store.create_payload_index(USERS, field_name, kind)

    def index_fields(self, items: list[Item]) -> None:
        """Index every filterable extra column of `items` before its values are loaded."""
        with self._lock:
            known = self.store.payload_indexes(ITEMS)
            kinds: dict[str, set[str]] = defaultdict(set)
            for item in items:
                for key, value in item.extra.items():
                    if key not in known:
                        kinds[key].add(_index_kind(value))
            for key, found in kinds.items():
                found.discard("none")
                if found == {"integer", "float"}:
                    found = {"float"}
                if len(found) == 1:
                    self.store.create_payload_index(ITEMS, key, found.pop())
                else:
                    log.info("payload field %r has mixed types %s; left unindexed", key, sorted(found))

    def index_kinds(self) -> dict[str, str | None]:
        """The kind of values each indexed item field holds ({} before any item is stored)."""
        return self.store.payload_index_kinds(ITEMS) if self.store.has_collection(ITEMS) else {}

    def filter(self, spec: dict[str, Any] | None) -> Filter:
        """A filter this store can apply, or `ConfigError` naming the field, the value and the
        fix: known catalog fields, values of the kind each holds."""
        flt = parse_filter(spec, _FILTER_ALIASES)
        if flt.must and self.store.has_collection(ITEMS):
            kinds = self.store.payload_index_kinds(ITEMS)
            unknown = [c.field for c in flt.must if c.field not in kinds]
            if unknown:
                names = sorted({"category", *kinds} - {"category_levels", "item_id", *STORE_MANAGED_KEYS})
                raise ConfigError(
                    f"Cannot filter on {unknown[0]!r}: it is not a catalog field. Filterable "
                    f"fields: {', '.join(names)}."
                )
            flt.must = [_typed_condition(c, kinds[c.field]) for c in flt.must]
        return flt


_HELD = {"keyword": "text", "integer": "numbers", "float": "numbers", "bool": "true/false values", "datetime": "dates"}


def _typed_condition(condition: Condition, kind: str | None) -> Condition:
    """Check a filter condition against the kind of values its field holds (None: unknown);
    an exact number on a float field becomes a one-point range (engines match floats by range)."""
    name = {"category_levels": "category"}.get(condition.field, condition.field)
    values = condition.value if condition.op == "any" else [condition.value]
    if condition.op == "range":
        dates = [isinstance(v, str) for v in condition.value.values()]
        if kind is None or (kind in ("integer", "float") and not any(dates)) or (kind == "datetime" and all(dates)):
            return condition
        if kind in ("integer", "float", "datetime"):
            want = "ISO dates such as '2026-11-01'" if kind == "datetime" else "numbers"
            raise ConfigError(f"filter on {name!r} has range {condition.value!r}, but {name!r} holds {_HELD[kind]}; use {want}.")
    if kind is None:
        return condition
    if kind == "datetime":
        raise ConfigError(f"filter on {name!r} needs a date range, e.g. {{{name!r}: {{'gte': '2026-11-01'}}}}.")
    expected = {"keyword": (str,), "integer": (int,), "float": (int, float), "bool": (bool,)}[kind]
    if condition.op == "range" or not all(isinstance(v, expected) and (kind == "bool") == isinstance(v, bool) for v in values):
        example = {"keyword": "'text'", "integer": "3 or {'gte': 1, 'lt': 5}", "float": "{'gte': 10, 'lt': 50}", "bool": "true"}[kind]
        raise ConfigError(
            f"filter on {name!r} has {'a range' if condition.op == 'range' else 'value ' + repr(condition.value)}, "
            f"but {name!r} holds {_HELD[kind]}; use e.g. {example}."
        )
    if kind == "float" and condition.op == "eq":
        return Condition(condition.field, "range", {"gte": float(condition.value), "lte": float(condition.value)})
    if kind == "float" and condition.op == "any":
        raise ConfigError(f"filter on {name!r} lists numbers {condition.value!r}; a float field takes a range, e.g. {{'gte': 10, 'lt': 50}}.")
    return condition


def _index_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "datetime" if iso_datetime(value) is not None else "keyword"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "keyword"
    return "none"
