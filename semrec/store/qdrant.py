"""The server backend: `qdrant-client` against a Qdrant server (`url=`), or its local mode for tests."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Iterable, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from ..errors import ConfigError
from .base import HNSW_EF, Condition, Filter, Hit, IndexKind, ScoreFormula, UpdateMode, query_filled, use_exact

log = logging.getLogger(__name__)

VECTOR = "dense"
#: Collection names on a server start with this (`<prefix>_items`, `<prefix>_users`).
COLLECTION_PREFIX = "semrec"
UPSERT_BATCH = 256
#: Indexing threshold (KB) restored after a bulk load; 0 defers HNSW building during the load.
INDEXING_THRESHOLD_KB = 10_000
_UPDATE_MODES = {
    "upsert": None,
    "insert_only": models.UpdateMode.INSERT_ONLY,
    "update_only": models.UpdateMode.UPDATE_ONLY,
}
_SCHEMAS = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
    "datetime": models.PayloadSchemaType.DATETIME,
}


class _Serialised:
    """A local-mode client whose calls run one at a time. Local mode is plain Python over shared
    arrays that an upsert may reallocate, so concurrent calls can fail (an IndexError seen from
    a read during another thread's upsert); one lock per client, shared by every store on it,
    makes each call, and so each conditional write, atomic, as on a server."""

    _locks: "weakref.WeakKeyDictionary[QdrantClient, threading.RLock]" = weakref.WeakKeyDictionary()
    _guard = threading.Lock()

    def __init__(self, client: "QdrantClient | _Serialised") -> None:
        self.inner = client.inner if isinstance(client, _Serialised) else client
        client = self.inner
        with self._guard:
            self._lock = self._locks.setdefault(client, threading.RLock())

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def serialised(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return serialised


class QdrantStore:
    """Collections `<prefix>_<name>` on a Qdrant server (or in qdrant-client's local mode).

    Example:
        >>> store = QdrantStore(":memory:")                 # tests
        >>> store = QdrantStore("http://localhost:6333")    # a server
    """

    kind = "qdrant"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = COLLECTION_PREFIX,
        api_key: str | None = None,
        timeout: float = 30.0,
        client: QdrantClient | None = None,
        version: str | None = None,
    ) -> None:
        if client is None:
            if url == ":memory:":
                client = QdrantClient(location=":memory:")
            elif url.startswith(("http://", "https://")):
                client = QdrantClient(url=url, api_key=api_key, timeout=timeout)
            else:
                client = QdrantClient(path=url)  # local mode on disk (tests only)
        #: qdrant-client's local mode is brute force and has no payload indexes (tests only).
        self.local = not url.startswith(("http://", "https://"))
        self.client = _Serialised(client) if self.local else client
        self.prefix = prefix
        #: None: collections by their live names `<prefix>_<name>` (aliases after a blue-green
        #: re-index); a version id: that version's own collections `<prefix>_<name>_<version>`.
        self.version = version
        self._counts: dict[str, int] = {}
        self._dims: dict[str, int] = {}
        self._aliases: dict[str, str] | None = None

    def _name(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.version is None else f"{self.prefix}_{name}_{self.version}"

    def refresh(self) -> bool:
        """Forget cached counts; True when an alias of this store now names another collection
        (a blue-green switch; aliases switch atomically on the server, so queries never fail)."""
        self._counts.clear()
        self._dims.clear()
        prefix = f"{self.prefix}_"
        aliases = {
            a.alias_name: a.collection_name
            for a in self.client.get_aliases().aliases
            if a.alias_name.startswith(prefix)
        }
        changed = self._aliases is not None and aliases != self._aliases
        self._aliases = aliases
        return changed

    def flush(self) -> None:
        """Writes are acknowledged with wait=True: nothing to do."""

    # collections -------------------------------------------------------------------------------
    def has_collection(self, name: str) -> bool:
        return self.client.collection_exists(self._name(name))

    def create_collection(self, name: str, dim: int, metadata: dict[str, Any]) -> None:
        if self.has_collection(name):
            raise ConfigError(f"Collection {self._name(name)!r} already exists.")
        self.client.create_collection(
            self._name(name),
            vectors_config={VECTOR: models.VectorParams(size=dim, distance=models.Distance.DOT)},
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0),
            metadata=metadata,
        )

    def _dim(self, name: str) -> int:
        if name not in self._dims:
            self._dims[name] = self.client.get_collection(self._name(name)).config.params.vectors[VECTOR].size
        return self._dims[name]

    def collection_metadata(self, name: str) -> dict[str, Any]:
        return dict(self.client.get_collection(self._name(name)).config.metadata or {})

    def create_payload_index(self, name: str, field_name: str, kind: IndexKind) -> None:
        if field_name in self.payload_indexes(name):
            return
        if not self.local:
            self.client.create_payload_index(self._name(name), field_name, _SCHEMAS[kind], wait=True)
        meta = self.collection_metadata(name)
        meta["payload_indexes"] = sorted({*meta.get("payload_indexes", []), field_name})
        meta["payload_index_kinds"] = {**meta.get("payload_index_kinds", {}), field_name: kind}
        self.client.update_collection(self._name(name), metadata=meta)

    def payload_indexes(self, name: str) -> set[str]:
        return set(self.collection_metadata(name).get("payload_indexes", []))

    def payload_index_kinds(self, name: str) -> dict[str, IndexKind | None]:
        meta = self.collection_metadata(name)
        kinds = meta.get("payload_index_kinds", {})
        return {f: kinds.get(f) for f in meta.get("payload_indexes", [])}

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
        condition, update_mode = _client_filter(only_if), _UPDATE_MODES[mode]
        rows = np.asarray(vectors, dtype=np.float32).tolist()
        for start in range(0, len(ids), UPSERT_BATCH):
            points = [
                models.PointStruct(id=pid, vector={VECTOR: row}, payload=payload)
                for pid, row, payload in zip(
                    ids[start : start + UPSERT_BATCH],
                    rows[start : start + UPSERT_BATCH],
                    payloads[start : start + UPSERT_BATCH],
                )
            ]
            self.client.upsert(
                self._name(name), points=points, wait=True, update_filter=condition, update_mode=update_mode
            )
        self._counts.pop(name, None)

    def set_payload(self, name: str, ids: Sequence[str], payload: dict[str, Any], *, only_if: Filter | None = None) -> None:
        if not ids:
            return
        selector: Any = list(ids)
        if only_if is not None:
            selector = _client_filter(Filter(list(only_if.must), list(only_if.exclude_ids), list(ids), list(only_if.should)))
        self.client.set_payload(self._name(name), payload=payload, points=selector, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.delete(self._name(name), points_selector=list(ids), wait=True)
            self._counts.pop(name, None)

    def erase(self, name: str, ids: Sequence[str]) -> None:
        """Delete points from this collection and from every version of it on the server (the
        server's own write-ahead log and segments drop them as it compacts)."""
        head = f"{self.prefix}_{name}"
        for collection in self.client.get_collections().collections:
            if collection.name == head or collection.name.startswith(head + "_v"):
                self.client.delete(collection.name, points_selector=list(ids), wait=True)
        self._counts.pop(name, None)

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, with_payload: bool | Sequence[str] = True
    ) -> list[Hit]:
        if not ids:
            return []
        selected = with_payload if isinstance(with_payload, bool) else list(with_payload)
        records = self.client.retrieve(
            self._name(name), list(ids), with_payload=selected, with_vectors=[VECTOR] if with_vectors else False
        )
        found = {str(r.id): _hit(r, with_vectors) for r in records}
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
        query, query_filter = np.asarray(vector, dtype=np.float32).tolist(), _client_filter(filter)

        def search(exact: bool) -> list[Hit]:
            params = None if self.local else models.SearchParams(exact=exact, hnsw_ef=HNSW_EF)
            options: dict[str, Any] = {"query": query, "using": VECTOR, "query_filter": query_filter, "search_params": params}
            if formula is not None:  # the engine rescores the vector query's best candidates
                prefetch = models.Prefetch(
                    query=query, using=VECTOR, filter=query_filter, limit=max(k, formula.candidates), params=params
                )
                options = {"query": _client_formula(formula), "prefetch": [prefetch]}
            response = self.client.query_points(
                self._name(name),
                limit=k,
                with_payload=True,
                with_vectors=[VECTOR] if with_vectors else False,
                **options,
            )
            return [_hit(p, with_vectors) for p in response.points]

        # local mode always scans everything
        return query_filled(search, self.local or use_exact(exact, self.count(name), self._dim(name)), k, filter)

    def top_by(self, name: str, field_name: str, k: int, filter: Filter | None = None) -> list[Hit]:
        records, _ = self.client.scroll(
            self._name(name),
            scroll_filter=_client_filter(filter),
            limit=k,
            with_payload=True,
            order_by=models.OrderBy(key=field_name, direction=models.Direction.DESC),
        )
        return [_hit(r, False) for r in records]

    def scroll(self, name: str, batch: int = 1000, with_vectors: bool = False, filter: Filter | None = None) -> Iterable[Hit]:
        offset, condition = None, _client_filter(filter)
        while True:
            records, offset = self.client.scroll(
                self._name(name),
                scroll_filter=condition,
                limit=batch,
                offset=offset,
                with_payload=True,
                with_vectors=[VECTOR] if with_vectors else False,
            )
            yield from (_hit(r, with_vectors) for r in records)
            if offset is None:
                return

    def count(self, name: str, filter: Filter | None = None) -> int:
        if filter:
            return self.client.count(self._name(name), count_filter=_client_filter(filter), exact=True).count
        value = self._counts.get(name)
        if value is None:
            value = self._counts[name] = self.client.count(self._name(name), exact=True).count
        return value

    def finish_bulk_load(self, name: str) -> None:
        self.client.update_collection(
            self._name(name),
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=INDEXING_THRESHOLD_KB),
        )

    def close(self) -> None:
        self.client.close()


def _hit(point: Any, with_vectors: bool) -> Hit:
    vector = None
    if with_vectors and point.vector is not None:
        vector = np.asarray(point.vector[VECTOR], dtype=np.float32)
    return Hit(str(point.id), point.payload or {}, float(getattr(point, "score", 0.0) or 0.0), vector)


def _client_condition(condition: Condition) -> Any:
    if condition.op == "empty":
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=condition.field))
    if condition.op == "nonempty":
        return models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=condition.field))])
    if condition.op == "eq":
        return models.FieldCondition(key=condition.field, match=models.MatchValue(value=condition.value))
    if condition.op == "any":
        return models.FieldCondition(key=condition.field, match=models.MatchAny(any=condition.value))
    if any(isinstance(v, str) for v in condition.value.values()):
        return models.FieldCondition(key=condition.field, range=models.DatetimeRange(**condition.value))
    return models.FieldCondition(key=condition.field, range=models.Range(**condition.value))


def _client_formula(formula: ScoreFormula) -> models.FormulaQuery:
    terms: list[Any] = ["$score"]
    for name, w in formula.boosts:
        value: Any = name
        if name in formula.bool_fields:  # a true/false field is a condition: 1 when true
            value = models.FieldCondition(key=name, match=models.MatchValue(value=True))
        terms.append(models.MultExpression(mult=[float(w), value]))
    defaults: dict[str, Any] = {f: 0 for f, _ in formula.boosts if f not in formula.bool_fields}
    if formula.decay_field and formula.decay_weight:
        params = models.DecayParamsExpression(
            x=models.DatetimeKeyExpression(datetime_key=formula.decay_field),
            target=models.DatetimeExpression(datetime=formula.decay_target),
            scale=float(formula.decay_scale_s),
            midpoint=0.5,
        )
        decay = {
            "exp": lambda: models.ExpDecayExpression(exp_decay=params),
            "gauss": lambda: models.GaussDecayExpression(gauss_decay=params),
            "lin": lambda: models.LinDecayExpression(lin_decay=params),
        }[formula.decay_kind]()
        terms.append(models.MultExpression(mult=[float(formula.decay_weight), decay]))
        defaults[formula.decay_field] = "1970-01-01T00:00:00Z"
    return models.FormulaQuery(formula=models.SumExpression(sum=terms), defaults=defaults)


def _client_filter(filter: Filter | None) -> models.Filter | None:
    if not filter:
        return None
    must_not = [models.HasIdCondition(has_id=list(filter.exclude_ids))] if filter.exclude_ids else None
    must = [_client_condition(c) for c in filter.must]
    if filter.only_ids is not None:
        must.append(models.HasIdCondition(has_id=list(filter.only_ids)))
    should = [_client_condition(c) for c in filter.should] or None
    return models.Filter(must=must or None, should=should, must_not=must_not)
