"""The item collection: every write of item points, reads, and the cache of item vectors.

`ItemStore` takes items with vectors made elsewhere (by an encoder in this process, or by the
actors of a distributed job: it needs no encoder). It keeps what the store manages across
writes (popularity, the collaborative part), counts popularity from the users who have seen an
item, and invalidates its in-process vector cache on each of its own writes.

Example:
    >>> items = ItemStore(store, schema, RecommenderConfig())
    >>> items.upsert(catalog.items, vectors)
    >>> items.finish_indexing()
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import Item
from .collaborative import neighbour_mean
from .errors import ConfigError, NotIndexedError
from .store import Hit, VectorStore, parse_filter, point_id
from .store.base import Condition, Filter, LRUCache
from .schema import CF_INTERACTIONS, ERASING, ITEMS, STORE_MANAGED_KEYS, USERS, Schema

if TYPE_CHECKING:  # the settings model is defined (and exported) with the facade
    from .recommender import RecommenderConfig

log = logging.getLogger(__name__)

#: Item vectors (history items and recommended items) kept in memory for the reasons.
_VECTOR_CACHE_ITEMS = 20_000
#: Up to this many items, popularity is recounted with one filtered count each; above, from one
#: scan of the users' `seen` lists.
_RECOUNT_BY_QUERY_MAX = 2_000
#: Compare attempts before a popularity recount gives up (the next write or fit recounts).
_RECOUNT_ATTEMPTS = 30


class ItemStore:
    """Item points: catalog fields, vectors, and the fields the store manages.

    Args:
        store: the vector store.
        schema: names, layout and payload indexes (collections are created through it).
        config: the collaborative settings used to give new items a collaborative part.
    """

    def __init__(self, store: VectorStore, schema: Schema, config: RecommenderConfig) -> None:
        self.store = store
        self.schema = schema
        self.config = config
        self._vector_cache = LRUCache(_VECTOR_CACHE_ITEMS)  # item id -> leading (text + cf) components

    # writes ------------------------------------------------------------------------------------
    def upsert(self, items: list[Item], vectors: np.ndarray) -> None:
        """Store validated items with their text vectors (one per item, of the schema's model).

        Payload indexes for new fields are created before the points are written; an item's
        popularity is kept. Call `finish_indexing()` after a bulk load.
        """
        dim = self.schema.fingerprint.dim
        if len(items) != len(vectors):
            raise ConfigError(f"{len(items)} items but {len(vectors)} vectors; expected one vector per item.")
        if len(vectors) and np.asarray(vectors).shape[1] != dim:
            raise ConfigError(
                f"vectors have {np.asarray(vectors).shape[1]} dimensions; this store's model makes "
                f"{dim}. Encode with the same model as the store."
            )
        self.schema.ensure_collection(ITEMS)
        self.schema.index_fields(items)
        self._vector_cache.invalidate(i.item_id for i in items)
        layout = self.schema.layout
        ids = [point_id("item", i.item_id) for i in items]
        stored = {h.id: h for h in self.store.retrieve(ITEMS, ids, with_vectors=layout.hybrid)}
        kept = STORE_MANAGED_KEYS if layout.hybrid else ("popularity",)
        payloads = [
            {**i.payload(), **{f: stored[pid].payload.get(f, 0.0) if pid in stored else 0.0 for f in kept}}
            for pid, i in zip(ids, items)
        ]
        if layout.hybrid:
            # an item keeps its collaborative and popularity parts (behaviour does not change with
            # its text); a new one borrows the former from its nearest items by text
            vectors = np.asarray(vectors, np.float32)
            cf = np.zeros((len(ids), layout.collaborative), np.float32)
            pop = np.zeros(len(ids), np.float32)
            new = []
            for row, pid in enumerate(ids):
                if pid in stored:
                    cf[row], pop[row] = layout.cf_part(stored[pid].vector), stored[pid].vector[-1]
                else:
                    new.append(row)
            if new:
                cf[new] = self._impute_cf(vectors[new])
            vectors = layout.items(vectors, cf, pop)
        self.store.upsert(ITEMS, ids, vectors, payloads)
        self._vector_cache.invalidate(i.item_id for i in items)
        kept_popularity = [i.item_id for pid, i in zip(ids, items) if pid in stored]
        if kept_popularity and len(kept_popularity) <= _RECOUNT_BY_QUERY_MAX:
            # a concurrent event may have recounted one of them between our read and write
            self.recount_popularity(kept_popularity)

    def write_fitted(self, hits: list[Hit], vectors: np.ndarray, counts: np.ndarray) -> None:
        """Replace stored items' vectors after a collaborative fit (`counts`: each item's
        interactions, also its popularity), then build the ANN index."""
        self.schema.ensure_collection(ITEMS)  # the interactions index on stores made before it existed
        for start in range(0, len(hits), 1000):
            chunk = hits[start : start + 1000]
            payloads = [
                {**h.payload, CF_INTERACTIONS: float(n), "popularity": float(n)}
                for h, n in zip(chunk, counts[start : start + 1000])
            ]
            self.store.upsert(ITEMS, [h.id for h in chunk], vectors[start : start + 1000], payloads)
        self.store.finish_bulk_load(ITEMS)
        self._vector_cache.clear()

    def delete(self, item_ids: list[str]) -> int:
        """Remove items (canonical ids); returns how many were stored."""
        if not item_ids or not self.store.has_collection(ITEMS):
            return 0
        found = self.hits(item_ids, missing_ok=True)
        self._vector_cache.invalidate(item_ids)
        self.store.delete(ITEMS, [h.id for h in found])
        self._vector_cache.invalidate(item_ids)
        return len(found)

    def finish_indexing(self) -> None:
        """Build the ANN index after a bulk load."""
        if self.store.has_collection(ITEMS):
            self.store.finish_bulk_load(ITEMS)

    def recount_popularity(self, item_ids: list[str]) -> None:
        """Set each item's popularity to the number of stored users who have seen it.

        A count is idempotent, so concurrent writers and crash repair can all recount without
        double counting; after writing, the items are counted again until a count matches what
        is stored (a writer that counted earlier may have written an older figure)."""
        ids = list(dict.fromkeys(item_ids))
        if not ids or not self.store.has_collection(ITEMS):
            return
        for _ in range(_RECOUNT_ATTEMPTS):
            counts = self._count_seen(ids)
            stored = {h.payload["item_id"]: h.payload.get("popularity", 0.0) for h in self.hits(ids, missing_ok=True)}
            stale: dict[float, list[str]] = defaultdict(list)
            for item_id, value in stored.items():
                if value != counts.get(item_id, 0.0):
                    stale[counts.get(item_id, 0.0)].append(point_id("item", item_id))
            if not stale:
                return
            for value, pids in stale.items():
                self.store.set_payload(ITEMS, pids, {"popularity": value})
        log.warning("popularity of %d items kept changing; it is recounted at the next write or fit", len(ids))

    def forget_cached(self) -> None:
        """Empty the vector cache (the store switched version, or to measure a cold start)."""
        self._vector_cache.clear()

    # reads -------------------------------------------------------------------------------------
    def count(self) -> int:
        return self.store.count(ITEMS) if self.store.has_collection(ITEMS) else 0

    def all(self, *, with_vectors: bool = False) -> list[Hit]:
        """Every stored item point ([] before any is stored)."""
        return list(self.store.scroll(ITEMS, with_vectors=with_vectors)) if self.store.has_collection(ITEMS) else []

    def hits(self, item_ids: list[str], *, with_vectors: bool = False, missing_ok: bool = False) -> list[Hit]:
        """Stored points of items (canonical ids); `NotIndexedError` names the first unknown id
        unless `missing_ok`."""
        if not self.store.has_collection(ITEMS):
            raise NotIndexedError("No items are indexed yet; call index_items() with a catalog first.")
        hits = self.store.retrieve(ITEMS, [point_id("item", i) for i in item_ids], with_vectors=with_vectors)
        if not missing_ok and len(hits) < len(item_ids):
            found = {h.payload["item_id"] for h in hits}
            missing = [i for i in item_ids if i not in found]
            raise NotIndexedError(
                f"Item {missing[0]!r} is not in the catalog; index it first with index_items() "
                "(nothing was changed)."
            )
        return hits

    def vectors(self, item_ids: list[str]) -> dict[str, np.ndarray]:
        """Items' vectors (text + collaborative parts, as in a user's vector) by id, from a
        bounded in-process cache; one store read fills what is missing. This part's writes evict
        what they change. Recommendations concentrate on a small share of the catalogue, so most
        are cached."""
        cache = self._vector_cache
        found = {i: v for i in item_ids if (v := cache.touch(i)) is not None}
        missing = [i for i in item_ids if i not in found]
        if missing:
            width, points = self.schema.layout.user_dim, {point_id("item", i): i for i in missing}
            generation = cache.generation
            for hit in self.store.retrieve(ITEMS, list(points), with_vectors=True, with_payload=False):
                found[points[hit.id]] = cache.put(points[hit.id], hit.vector[:width], generation)
        return {i: found[i] for i in item_ids if i in found}

    def text_vectors(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Every stored item's fields and its text vector."""
        hits = self.all(with_vectors=True)
        layout = self.schema.layout
        vectors = layout.text_part(np.stack([h.vector for h in hits])) if hits else np.zeros((0, self.schema.fingerprint.dim), np.float32)
        return [h.payload for h in hits], vectors

    def near_duplicates(self, item_ids: list[str], threshold: float) -> dict[str, list[tuple[str, float]]]:
        """Per item, the other items at least `threshold` similar to it by text (one engine
        query each, text part only)."""
        layout = self.schema.layout
        if threshold >= 1:
            return {}
        found: dict[str, list[tuple[str, float]]] = {}
        for hit in self.hits(item_ids, with_vectors=True, missing_ok=True):
            flt = Filter(exclude_ids=[hit.id])
            close = self.store.query(ITEMS, layout.query(layout.text_part(hit.vector)), 50, flt)
            found[hit.payload["item_id"]] = [(h.payload["item_id"], h.score) for h in close if h.score >= threshold]
        return found

    # internals ---------------------------------------------------------------------------------
    def _impute_cf(self, text_vectors: np.ndarray) -> np.ndarray:
        """Collaborative parts for new items: the similarity-weighted mean of the stored cf parts
        of their nearest items by text among those with enough interactions at the last fit."""
        layout, cfg = self.schema.layout, self.config.collaborative
        out = np.zeros((len(text_vectors), layout.collaborative), np.float32)
        warm = parse_filter({CF_INTERACTIONS: {"gte": cfg.min_interactions}})
        if cfg.cold_shrinkage <= 0 or not self.store.top_by(ITEMS, CF_INTERACTIONS, 1, warm):
            return out  # never fitted, or imputation turned off
        for row, vector in enumerate(text_vectors):
            hits = self.store.query(ITEMS, layout.query(vector), cfg.cold_neighbours, warm, with_vectors=True)
            if hits:
                sims = np.array([h.score for h in hits], np.float32)
                out[row] = neighbour_mean(sims, np.stack([layout.cf_part(h.vector) for h in hits]))
        return out

    def _count_seen(self, item_ids: list[str]) -> dict[str, float]:
        """How many stored users have seen each item (users being erased do not count)."""
        if not self.store.has_collection(USERS):
            return {}
        if len(item_ids) <= _RECOUNT_BY_QUERY_MAX:
            # index lookups per item, less the users being erased (found through their indexed
            # mark, so no user's payload is read but theirs)
            counts = Counter({i: self.store.count(USERS, Filter([Condition("seen", "eq", i)])) for i in item_ids})
            wanted = set(item_ids)
            for hit in self.store.scroll(USERS, filter=Filter([Condition(ERASING, "eq", True)])):
                counts.subtract(wanted.intersection(hit.payload.get("seen", [])))
            return {i: float(counts[i]) for i in item_ids}
        wanted, counts = set(item_ids), Counter()
        for hit in self.store.scroll(USERS):
            if not hit.payload.get(ERASING):
                counts.update(wanted.intersection(hit.payload.get("seen", [])))
        return {i: float(counts[i]) for i in item_ids}
