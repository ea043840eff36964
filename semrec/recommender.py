"""The `Recommender` facade: catalog -> encoder -> vector store, users updated per event."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .catalog import DEFAULT_TEMPLATE, Item, Reject, canonical_id, clean_query_text, load_catalog, read_table, write_rejects
from .collaborative import CollaborativeConfig, VectorLayout, fit_item_parts, neighbour_mean
from .encoders import Encoder, ModelFingerprint, l2_normalize, load_encoder
from .errors import ConcurrentWriteError, ConfigError, ModelMismatchError, NotIndexedError, UnknownUserError
from .profiles import Event, ProfileConfig, UserProfile, events_from_frame, make_event, pool_vectors, user_vector
from .ranking import RankingRules, Recommendation, Results, explain, mmr
from .store import Hit, VectorStore, open_store, parse_filter, point_id
from .store.base import Condition, Filter, LRUCache, ScoreFormula, iso_datetime

log = logging.getLogger(__name__)

ITEMS = "items"
USERS = "users"
#: Fields semrec indexes on every item collection.
_BASE_INDEXES = {"item_id": "keyword", "category_levels": "keyword", "tags": "keyword", "popularity": "float"}
#: Item vectors (history items and recommended items) kept in memory for the reasons.
_VECTOR_CACHE_ITEMS = 20_000
#: Stored user points (profile payload and vector) kept in memory between `recommend` calls, on
#: the embedded store only: its folder lock makes this process the only writer, and every write
#: to a profile here evicts it.
_PROFILE_CACHE_USERS = 2_000
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
#: User payload fields semrec keeps beside the profile itself.
USER_STATE_KEYS = (REVISION, PENDING, ERASING)
_USER_INDEXES = {"seen": "keyword", REVISION: "keyword", PENDING: "keyword"}
#: Compare-and-swap attempts before a write gives up with `ConcurrentWriteError`.
_WRITE_ATTEMPTS = 30
#: In-process writers of different users run in parallel; one user's writers queue (lock striping).
_USER_LOCK_STRIPES = 64
#: Up to this many items, popularity is recounted with one filtered count each; above, from one
#: scan of the users' `seen` lists.
_RECOUNT_BY_QUERY_MAX = 64
#: A filter on "category" matches the category and every sub-category.
_FILTER_ALIASES = {"category": "category_levels"}


class RecommenderConfig(BaseModel):
    """Settings of a `Recommender` (typos fail: unknown keys are rejected).

    Args:
        unknown_user: "popular" answers users with no events with the most popular items
            (popularity = number of distinct users who interacted); "raise" raises
            `UnknownUserError`. Users with interests but no events get interest-based results.
        max_k: the largest `k` accepted; larger values raise. `k` above the catalogue size
            returns the whole (filtered) catalogue.
        diversity: default MMR trade-off (0 = pure relevance).
        template: how item text is built from name, category, tags, description.
        profile: how user profiles are kept and turned into text vectors.
        collaborative: the collaborative signal and popularity prior fused into every
            recommendation (`dim=0`: a text-only store). Fit with `fit_collaborative()`.
    """

    model_config = ConfigDict(extra="forbid")

    unknown_user: Literal["popular", "raise"] = "popular"
    max_k: int = Field(1000, ge=1)
    diversity: float = Field(0.0, ge=0, le=1)
    template: str = DEFAULT_TEMPLATE
    encode_batch_size: int = Field(64, ge=1)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    collaborative: CollaborativeConfig = Field(default_factory=CollaborativeConfig)


@dataclass
class IndexReport:
    """What `index_items` did."""

    indexed: int
    rejected: list[Reject] = field(default_factory=list)
    rejects_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.rejected


@dataclass
class CollaborativeReport:
    """What `fit_collaborative` did."""

    users: int
    items: int
    interactions: int
    warm_items: int
    seconds: float


@dataclass
class RecordReport:
    """What `record_many` did."""

    events: int
    users: int
    duplicates: int = 0
    skipped_unknown_items: int = 0
    #: Rows that are not valid events (with the reason); the valid rows were recorded.
    rejected: list[Reject] = field(default_factory=list)
    #: Per event given, in order: "recorded", "duplicate" (already stored) or "unknown_item".
    outcomes: list[str] = field(default_factory=list)


class Recommender:
    """Semantic recommendations from one vector space for items and users.

    Example:
        >>> rec = Recommender.open("shop-store")                   # embedded Qdrant Edge folder
        >>> rec.index_items("catalog.csv")
        >>> rec.record("u1", "el-001", kind="view")
        >>> rec.recommend("u1", k=5, filter={"category": "Electronics"})
    """

    def __init__(self, store: VectorStore, encoder: Encoder, config: RecommenderConfig | None = None):
        self.store = store
        self.encoder = encoder
        self.config = config or RecommenderConfig()
        self._layout: VectorLayout | None = None
        self._vector_cache = LRUCache(_VECTOR_CACHE_ITEMS)  # item id -> leading (text + cf) components
        self._profile_cache = LRUCache(_PROFILE_CACHE_USERS) if store.kind == "edge" else None  # user id -> Hit
        self._user_locks = [threading.Lock() for _ in range(_USER_LOCK_STRIPES)]
        self._schema_lock = threading.RLock()  # collection and payload-index creation
        #: Writes that lost a compare-and-swap to another writer and were re-applied.
        self.write_conflicts = 0
        self._check_model(ITEMS)
        self._check_model(USERS)
        self._prepare_users()
        self.replay_changes()

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        url: str | None = None,
        model: str | Path | None = None,
        encoder: Encoder | None = None,
        config: RecommenderConfig | dict | None = None,
        **store_options: Any,
    ) -> "Recommender":
        """Open (or create) an embedded store at `path`, or use a Qdrant server at `url`.

        Args:
            path: a folder for the embedded Qdrant Edge store (created if absent).
            url: a Qdrant server URL, or ":memory:" (qdrant-client local mode, for tests).
            model: sentence-transformers name or folder (None: packaged all-MiniLM-L6-v2).
            encoder: an already loaded encoder (overrides `model`).
            config: `RecommenderConfig` or a dict of its fields.
        """
        if isinstance(config, dict):
            config = RecommenderConfig(**config)
        store = open_store(path, url=url, **store_options)
        try:
            return cls(store, encoder or load_encoder(model), config)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def refresh(self) -> bool:
        """Follow a blue-green re-index (`semrec reindex`): True when the store switched version.

        An embedded store keeps serving the version it opened until this is called (one `stat`
        when nothing changed); a server's aliases switch by themselves. The new version's model
        is checked, so a reader whose model no longer matches gets `ModelMismatchError`.
        """
        refresh = getattr(self.store, "refresh", None)
        if refresh is None or not refresh():
            return False
        self._layout = None
        self._vector_cache.clear()
        self._forget_cached_profiles()
        self._check_model(ITEMS)
        self._check_model(USERS)
        self._prepare_users()
        self.replay_changes()
        return True

    def __enter__(self) -> "Recommender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # catalog -----------------------------------------------------------------------------------
    def index_items(
        self,
        items: pd.DataFrame | str | Path,
        *,
        rejects_path: str | Path | None = None,
        show_progress: bool = False,
        batch_size: int = 512,
    ) -> IndexReport:
        """Validate, encode and store catalog items; bad rows are reported (and written to
        `rejects_path` as JSONL when given) while the good ones are indexed.

        Re-indexing an item replaces its text, vector and fields (its popularity is kept).
        """
        catalog = load_catalog(items, template=self.config.template)
        for start in range(0, len(catalog.items), batch_size):
            batch = catalog.items[start : start + batch_size]
            vectors = self.encoder.encode(
                [i.text for i in batch], batch_size=self.config.encode_batch_size, show_progress=show_progress
            )
            self.upsert_items(batch, vectors)
        if catalog.items:
            self.finish_indexing()
        path = write_rejects(catalog.rejects, rejects_path) if rejects_path and catalog.rejects else None
        for reject in catalog.rejects[:20]:
            log.warning("catalog row %s rejected: %s", reject.row, reject.reason)
        return IndexReport(len(catalog.items), catalog.rejects, path)

    def upsert_items(self, items: list[Item], vectors: np.ndarray) -> None:
        """Store validated items with vectors made elsewhere (e.g. by a distributed encoding job).

        Payload indexes for new fields are created before the points are written; an item's
        popularity is kept. Call `finish_indexing()` after a bulk load.
        """
        if len(items) != len(vectors):
            raise ConfigError(f"{len(items)} items but {len(vectors)} vectors; expected one vector per item.")
        if len(vectors) and np.asarray(vectors).shape[1] != self.encoder.dim:
            raise ConfigError(
                f"vectors have {np.asarray(vectors).shape[1]} dimensions; this store's model makes "
                f"{self.encoder.dim}. Encode with the same model as the store."
            )
        self._ensure_collection(ITEMS)
        self._ensure_indexes(items)
        self._vector_cache.invalidate(i.item_id for i in items)
        layout = self.layout
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
            self._recount_popularity(kept_popularity)

    def fit_collaborative(self, *, seed: int = 0) -> CollaborativeReport:
        """(Re)fit the collaborative part of every item from the users' interactions so far.

        Who interacted with what comes from the stored profiles (every item each user has
        seen). Items get their collaborative vector (cold ones shrunk towards their text
        neighbours') and a popularity component; users' collaborative parts are re-pooled. Run
        it after loading events and then periodically (e.g. nightly), like any collaborative
        model; between fits, events still update users in real time, and new items borrow their
        text neighbours' collaborative vectors.
        """
        started = time.perf_counter()
        layout, cfg = self.layout, self.config.collaborative
        if not layout.hybrid:
            raise ConfigError(
                "This store was created text-only (collaborative dim 0), so it has no room for "
                "collaborative vectors. Re-index into a new store with "
                "RecommenderConfig(collaborative=CollaborativeConfig(dim=512)) to use them."
            )
        items = list(self.store.scroll(ITEMS, with_vectors=True)) if self.store.has_collection(ITEMS) else []
        if not items:
            raise NotIndexedError("No items are indexed yet; call index_items() with a catalog first.")
        users = list(self.store.scroll(USERS, with_vectors=True)) if self.store.has_collection(USERS) else []
        column = {h.payload["item_id"]: j for j, h in enumerate(items)}
        rows, cols = [], []
        for r, user in enumerate(users):
            seen = [column[i] for i in user.payload.get("seen", []) if i in column]
            rows += [r] * len(seen)
            cols += seen
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), len(items)))
        text = layout.text_part(np.stack([h.vector for h in items]))
        _, cf, pop = fit_item_parts(matrix, text, cfg.model_copy(update={"dim": layout.collaborative}), seed=seed)
        counts = np.asarray(matrix.sum(0)).ravel()
        self._ensure_collection(ITEMS)  # the interactions index on stores made before it existed
        vectors = layout.items(text, cf, pop)
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            payloads = [
                {**h.payload, CF_INTERACTIONS: float(n), "popularity": float(n)}
                for h, n in zip(chunk, counts[start : start + 1000])
            ]
            self.store.upsert(ITEMS, [h.id for h in chunk], vectors[start : start + 1000], payloads)
        self.store.finish_bulk_load(ITEMS)
        self._vector_cache.clear()
        self._forget_cached_profiles()
        by_item = {h.payload["item_id"]: cf[j] for j, h in enumerate(items)}

        def refit_user(profile: UserProfile, hit: Hit) -> np.ndarray:
            pooled = pool_vectors(by_item, profile.pooling_weights(self.config.profile))
            return layout.user(layout.text_part(hit.vector), pooled)

        for start in range(0, len(users), 1000):
            # users who wrote since the scroll above are re-read and refitted (compare-and-swap)
            self._rewrite_users(users[start : start + 1000], refit_user)
        if users:
            self.store.finish_bulk_load(USERS)
        # events recorded while fitting changed popularity after it was counted above
        self._recount_popularity([h.payload["item_id"] for h in items])
        return CollaborativeReport(
            len(users), len(items), int(matrix.nnz), int((counts >= cfg.min_interactions).sum()),
            round(time.perf_counter() - started, 2),
        )

    def finish_indexing(self) -> None:
        """Build the ANN index after a bulk load (done by `index_items` itself)."""
        if self.store.has_collection(ITEMS):
            self.store.finish_bulk_load(ITEMS)

    def item(self, item_id: Any) -> dict[str, Any]:
        """The stored fields of one item."""
        return self._item_hits([canonical_id(item_id)])[0].payload

    def item_vectors(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Every stored item's fields and its text vector (for exploration and plots)."""
        hits = list(self.store.scroll(ITEMS, with_vectors=True)) if self.store.has_collection(ITEMS) else []
        vectors = self.layout.text_part(np.stack([h.vector for h in hits])) if hits else np.zeros((0, self.encoder.dim), np.float32)
        return [h.payload for h in hits], vectors

    def user_vector(self, user_id: Any) -> np.ndarray | None:
        """The text vector of a user, in the items' text space (None for an unknown user)."""
        if not self.store.has_collection(USERS):
            return None
        hits = self.store.retrieve(USERS, [point_id("user", canonical_id(user_id, "user_id"))], with_vectors=True)
        return self.layout.text_part(hits[0].vector) if hits else None

    @property
    def layout(self) -> VectorLayout:
        """How the stored vectors are laid out: fixed when the item collection is created."""
        if self._layout is None:
            if not self.store.has_collection(ITEMS):
                return VectorLayout(self.encoder.dim, self.config.collaborative.dim)
            self._layout = VectorLayout.from_metadata(self.store.collection_metadata(ITEMS), self.encoder.dim)
        return self._layout

    @property
    def n_items(self) -> int:
        return self.store.count(ITEMS) if self.store.has_collection(ITEMS) else 0

    # users -------------------------------------------------------------------------------------
    def record(self, user_id: Any, item_id: Any, kind: str = "view", ts: Any = None, weight: float = 1.0) -> UserProfile:
        """Record one event; the very next `recommend` for this user reflects it.

        Raises `NotIndexedError` (and records nothing) when the item is not in the catalog.
        Recording the same event (user, item, kind, time) again changes nothing.
        """
        event = make_event(user_id, item_id, kind, ts, weight)
        profiles, _ = self._apply([event], "raise")
        return profiles.get(event.user_id) or self.profile(event.user_id)

    def record_many(self, events: pd.DataFrame | str | Path, *, on_unknown_item: Literal["raise", "skip"] = "raise") -> RecordReport:
        """Record a table of events (user_id, item_id, [kind], [ts], [weight]) in time order.

        Rows that are not valid events (bad id, time or weight) are listed in
        `report.rejected` with the reason; the valid rows are recorded.

        Each user's summary is encoded once per call, not once per event. With
        `on_unknown_item="raise"` (default) nothing is recorded if an item is unknown. Events
        already recorded (same user, item, kind and time) are counted as duplicates and change
        nothing, so a batch can be sent again after a failure.
        """
        frame = read_table(events)
        rejects: list[Reject] = []
        parsed = events_from_frame(frame, rejects=rejects)
        for reject in rejects[:20]:
            log.warning("events row %s rejected: %s", reject.row, reject.reason)
        _, report = self._apply(parsed, on_unknown_item)
        report.rejected = rejects
        return report

    def record_events(self, events: list[Event], *, on_unknown_item: Literal["raise", "skip"] = "skip") -> RecordReport:
        """Record validated events (see `make_event`); `report.outcomes` says, per event, whether
        it was recorded, already stored, or for an item not in the catalog."""
        _, report = self._apply(list(events), on_unknown_item)
        return report

    def delete_items(self, item_ids: list[Any]) -> int:
        """Remove items from the catalog (they are no longer recommended; users' histories keep
        them). Returns how many were stored."""
        ids = [canonical_id(i) for i in item_ids]
        if not ids or not self.store.has_collection(ITEMS):
            return 0
        found = self._item_hits(ids, missing_ok=True)
        self._vector_cache.invalidate(ids)
        self.store.delete(ITEMS, [h.id for h in found])
        self._vector_cache.invalidate(ids)
        return len(found)

    def set_interests(self, user_id: Any, interests: list[str] | str) -> UserProfile:
        """Declare what a user follows (e.g. ["electronics", "smart devices"]); used in their
        summary, and enough on its own to recommend to a user without events."""
        if isinstance(interests, str):
            interests = [interests]
        clean = [" ".join(str(i).split()) for i in interests if str(i).strip()]
        if not clean:
            raise ConfigError(f"interests {interests!r} is empty; expected words such as ['electronics'].")
        uid = canonical_id(user_id, "user_id")

        def declare(profile: UserProfile) -> int:
            changed = profile.interests != clean
            profile.interests = clean
            return int(changed)

        written, _ = self._update_users({uid: declare})
        self._log_change({"op": "interests", "user_id": uid, "interests": clean})
        return written.get(uid) or self.profile(uid)

    def profile(self, user_id: Any) -> UserProfile | None:
        """The stored profile of a user, or None."""
        uid = canonical_id(user_id, "user_id")
        hits = self._read_users([uid])
        return UserProfile.model_validate(hits[uid].payload) if uid in hits else None

    def user_ids(self) -> list[str]:
        """Every stored user's id."""
        if not self.store.has_collection(USERS):
            return []
        return [h.payload["user_id"] for h in self.store.scroll(USERS) if not h.payload.get(ERASING)]

    def forget_user(self, user_id: Any) -> bool:
        """Remove every trace of a user: profile, vector, and their share of item popularity.

        The user is first marked as being erased (one write), then deleted; a crash in between
        is finished when the store next opens.
        """
        uid = canonical_id(user_id, "user_id")
        pid = point_id("user", uid)
        with self._locked_users([uid]):
            for _ in range(_WRITE_ATTEMPTS):
                hit = self._read_users([uid]).get(uid)
                if hit is None:
                    return False
                rev, pending = _revision(hit), sorted({*hit.payload.get(PENDING, []), *hit.payload.get("seen", [])})
                token = _new_revision()
                self._forget_cached_profiles([uid])
                self.store.set_payload(USERS, [pid], {ERASING: True, PENDING: pending, REVISION: token}, only_if=_same_revision([rev]))
                if self._stored_revisions([uid]).get(uid) == token:
                    break
                _backoff()
            else:
                raise ConcurrentWriteError(f"User {uid!r} kept changing while being erased; try again.")
            self._finish_erasure([uid], pending)
        return True

    def _finish_erasure(self, user_ids: list[str], items: list[str]) -> None:
        pids = {point_id("user", u) for u in user_ids}
        erase = getattr(self.store, "erase", None)
        if erase is not None:
            erase(USERS, sorted(pids))  # every version, and out of the engine's files
        else:
            self.store.delete(USERS, sorted(pids))
        scrub = getattr(self.store, "scrub_changes", None)
        if scrub is not None:
            scrub(lambda entry: not pids & _users_of(entry))
        self._forget_cached_profiles(user_ids)
        self._recount_popularity(items)

    def _log_change(self, entry: dict[str, Any]) -> None:
        """While a blue-green rebuild runs (or after it switched, until this process refreshes),
        log the user write for the new version, which replays it when opened."""
        target = getattr(self.store, "rebuild_target", None)
        version = target() if target is not None else None
        if version is not None:
            self.store.log_change(version, entry)

    def replay_changes(self) -> None:
        """Apply the user writes made to an older version while this one was being built."""
        replay = getattr(self.store, "replay_changes", None)
        if replay is None or not self.store.has_collection(ITEMS):
            return
        erased = self.store.erased(USERS)

        def apply(entries: list[dict[str, Any]]) -> None:
            events = [Event(**e) for entry in entries if entry.get("op") == "events" for e in entry["events"]]
            events = [e for e in events if point_id("user", e.user_id) not in erased]
            if events:
                self._apply(events, "skip")
            for entry in entries:
                if entry.get("op") == "interests" and point_id("user", entry["user_id"]) not in erased:
                    self.set_interests(entry["user_id"], entry["interests"])

        if replayed := replay(apply):
            log.info("replayed %d user writes made during the rebuild of this version", replayed)

    # queries -----------------------------------------------------------------------------------
    def recommend(
        self,
        user_id: Any,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        exclude_seen: bool = True,
        *,
        diversity: float | None = None,
        explain_results: bool = True,
        negatives: list[Any] | None = None,
        rules: RankingRules | dict | None = None,
    ) -> Results:
        """The top-k items for a user by dot product with their vector.

        Unknown users follow `config.unknown_user` ("popular" or "raise"). Items the user
        disliked (negative kinds, `ProfileConfig.negative_kinds`) and the `negatives` given
        for this call are left out, and their neighbours pushed down: the query is the user's
        vector minus `negative_weight` x the pooled vector of those items, one engine query.
        """
        k = self._check_k(k)
        uid = canonical_id(user_id, "user_id")
        flt = self._filter(filter)
        rules = self._rules(rules)
        pushed = self._negatives(negatives)
        hits = list(self._read_users([uid]).values())
        if not hits:
            if self.config.unknown_user == "raise":
                raise UnknownUserError(
                    f"User {uid!r} has no recorded events. Record some with record(), give "
                    "interests with set_interests(), or use unknown_user='popular'."
                )
            return self._popular(k, flt, list(pushed))
        profile = hits[0].payload  # as stored (not validated): the query needs `seen`, the reasons the history
        pushed = {**profile.get("negatives", {}), **pushed}
        excluded = [*(profile.get("seen", []) if exclude_seen else []), *pushed]
        flt.exclude_ids = [point_id("item", i) for i in dict.fromkeys(excluded)]
        if not profile.get("history") and not profile.get("interests"):
            return self._popular(k, flt, [])  # only dislikes so far: nothing to be near yet
        layout = self.layout
        stored = hits[0].vector
        query = layout.query(layout.text_part(stored), layout.cf_part(stored), **self._weights(rules))
        return self._rank(self._push_down(query, pushed), k, flt, diversity, profile if explain_results else None, rules)

    def recommend_many(
        self,
        user_ids: list[Any],
        k: int = 10,
        filter: dict[str, Any] | None = None,
        exclude_seen: bool = True,
        *,
        diversity: float | None = None,
        explain_results: bool = True,
    ) -> dict[str, Results]:
        """`recommend` for many users (e.g. to export every user's top-k): {user id: results}.
        The filter is checked once; each user is answered as `recommend` would."""
        self._filter(filter)  # a bad filter fails before any work
        return {
            canonical_id(u, "user_id"): self.recommend(u, k, filter, exclude_seen, diversity=diversity, explain_results=explain_results)
            for u in user_ids
        }

    def search(
        self,
        text: str,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        *,
        diversity: float | None = None,
        rules: RankingRules | dict | None = None,
    ) -> Results:
        """Items closest to a free text (e.g. "quiet wireless earphones"), by text alone."""
        text = clean_query_text(text)
        query = self.layout.query(self.encoder.encode_query(text))
        words = {w.strip(".,;:!?").lower() for w in text.split()}
        basis = {"tag_counts": dict.fromkeys(words, 1.0), "lead": f"matches {text[:60]!r}"}
        return self._rank(query, self._check_k(k), self._filter(filter), diversity, basis, self._rules(rules))

    def similar(
        self,
        item_id: Any,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        *,
        diversity: float | None = None,
        negatives: list[Any] | None = None,
        rules: RankingRules | dict | None = None,
    ) -> Results:
        """Items closest to a given item (the item itself excluded): scored as for a user whose
        only event is this item (text, collaborative and popularity parts); `negatives` (item
        ids) are left out and their neighbours pushed down, as in `recommend`."""
        iid = canonical_id(item_id)
        anchor = self._item_hits([iid], with_vectors=True)[0]
        flt = self._filter(filter)
        pushed = self._negatives(negatives)
        flt.exclude_ids = [anchor.id, *(point_id("item", i) for i in pushed)]
        layout = self.layout
        cf = l2_normalize(layout.cf_part(anchor.vector)) if layout.hybrid else None
        rules = self._rules(rules)
        query = layout.query(layout.text_part(anchor.vector), cf, **self._weights(rules))
        p = anchor.payload
        basis = {
            "history": [{"item_id": iid, "name": p.get("name", iid)}],
            "tag_counts": dict.fromkeys(p.get("tags", []), 1.0),
            "category_counts": {p["category"]: 1.0} if p.get("category") else {},
        }
        return self._rank(self._push_down(query, pushed), self._check_k(k), flt, diversity, basis, rules)

    def popular(self, k: int = 10, filter: dict[str, Any] | None = None) -> Results:
        """The items with the most distinct users, most popular first."""
        return self._popular(self._check_k(k), self._filter(filter), [])

    def _popular(self, k: int, flt: Filter, excluded: list[str]) -> Results:
        if excluded:
            flt.exclude_ids = [*flt.exclude_ids, *(point_id("item", i) for i in excluded)]
        hits = self.store.top_by(ITEMS, "popularity", k, flt)
        return Results(
            Recommendation.from_hit(h, "popular", score=float(h.payload.get("popularity", 0.0)), score_kind="popularity")
            for h in hits
        )

    def _near_duplicates(self, item_ids: list[str]) -> dict[str, list[tuple[str, float]]]:
        """Per item, the other items at least `near_duplicate` similar to it by text (one engine
        query each, text part only)."""
        threshold, layout = self.config.profile.near_duplicate, self.layout
        if threshold >= 1:
            return {}
        found: dict[str, list[tuple[str, float]]] = {}
        for hit in self._item_hits(item_ids, with_vectors=True, missing_ok=True):
            flt = Filter(exclude_ids=[hit.id])
            close = self.store.query(ITEMS, layout.query(layout.text_part(hit.vector)), 50, flt)
            found[hit.payload["item_id"]] = [(h.payload["item_id"], h.score) for h in close if h.score >= threshold]
        return found

    def _negatives(self, item_ids: list[Any] | None) -> dict[str, float]:
        """Per-call negative examples (item ids, each of strength 1); unknown ids are an error."""
        if not item_ids:
            return {}
        if isinstance(item_ids, (str, int)):
            item_ids = [item_ids]
        ids = [canonical_id(i) for i in item_ids]
        self._item_hits(ids)  # raises NotIndexedError naming an unknown id
        return dict.fromkeys(ids, 1.0)

    def _push_down(self, query: np.ndarray, negatives: dict[str, float]) -> np.ndarray:
        """The query minus `negative_weight` x the strength-weighted mean of the negative items'
        vectors (text and collaborative parts weighted as in the query): items near what the
        user rejected score lower, in the same single dot-product query."""
        beta = self.config.profile.negative_weight
        if not negatives or beta <= 0:
            return query
        vectors = self._explanation_vectors(list(negatives))
        if not vectors:
            return query
        layout, cfg = self.layout, self.config.collaborative
        text = pool_vectors({i: layout.text_part(v) for i, v in vectors.items()}, negatives)
        cf = pool_vectors({i: layout.cf_part(v) for i, v in vectors.items()}, negatives) if layout.hybrid else None
        if text is None:
            return query
        return (query - beta * layout.query(text, cf, weight=cfg.weight, popularity_weight=0.0)).astype(np.float32)

    # internals ---------------------------------------------------------------------------------
    def _rank(
        self, vector: np.ndarray, k: int, flt, diversity: float | None, profile: dict[str, Any] | None, rules: RankingRules | None = None
    ) -> Results:
        """Query the items; with a `profile` (a stored profile's payload, or the same keys made
        for a search or an anchor item), give reasons drawn from it; `rules` apply inside the
        engine's ranking (boosts, decay), or as exclusions (hide) and leading results (pin)."""
        diversity = self.config.diversity if diversity is None else diversity
        pinned: list[Hit] = []
        formula = None
        if rules is not None:
            hidden = set(rules.hide)
            pinned = [h for h in self._item_hits([i for i in rules.pin if i not in hidden], missing_ok=True)][:k]
            flt.exclude_ids = [*flt.exclude_ids, *(point_id("item", i) for i in hidden), *(h.id for h in pinned)]
            formula = self._formula(rules)
            k -= len(pinned)
        hits: list[Hit] = []
        if k > 0:
            fetch = min(self.config.max_k, k * 4) if diversity > 0 else k
            hits = self.store.query(ITEMS, vector, fetch, flt, with_vectors=diversity > 0, formula=formula)
            hits = mmr(vector, hits, k, diversity) if diversity > 0 else hits
        leading = [Recommendation.from_hit(h, "pinned", score=0.0, score_kind="pinned") for h in pinned]
        if profile is None:
            return Results([*leading, *(Recommendation.from_hit(h) for h in hits)])
        recent = {e["item_id"]: e["name"] for e in profile.get("history", [])[-20:]}
        hit_ids = [str(h.payload.get("item_id")) for h in hits]
        by_id = self._explanation_vectors(list(recent) + hit_ids)
        names = [n for i, n in recent.items() if i in by_id]
        history = np.stack([by_id[i] for i in recent if i in by_id]) if names else None
        found = history is not None and all(i in by_id for i in hit_ids) and hit_ids
        nearest = (np.stack([by_id[i] for i in hit_ids]) @ history.T).argmax(axis=1) if found else None
        lead = profile.get("lead")
        if lead is None and not names and profile.get("interests"):
            lead = "for your interests: " + ", ".join(profile["interests"][:3])
        reasons = explain(hits, names, nearest, profile.get("tag_counts", {}), profile.get("category_counts", {}), lead)
        return Results([*leading, *(Recommendation.from_hit(h, r) for h, r in zip(hits, reasons))])

    def _rules(self, rules: RankingRules | dict | None) -> RankingRules | None:
        """Validated rules: boosted fields numeric or bool, the decay field a date."""
        if rules is None:
            return None
        if isinstance(rules, dict):
            try:
                rules = RankingRules(**rules)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ConfigError(
                    f"rules: {'.'.join(map(str, first['loc']))}: {first['msg']} (got {first.get('input')!r}); see RankingRules."
                ) from None
        kinds = self.store.payload_index_kinds(ITEMS) if self.store.has_collection(ITEMS) else {}
        for name in rules.boost:
            if kinds.get(name) not in ("integer", "float", "bool"):
                numeric = sorted(f for f, kind in kinds.items() if kind in ("integer", "float", "bool") and f not in STORE_MANAGED_KEYS)
                raise ConfigError(
                    f"rules.boost on {name!r}: it is not a numeric or true/false catalog field; boost one of: "
                    f"{', '.join(numeric) or '(none in this catalog)'}."
                )
        if rules.decay is not None and kinds.get(rules.decay.field) != "datetime":
            dates = sorted(f for f, kind in kinds.items() if kind == "datetime")
            raise ConfigError(
                f"rules.decay on {rules.decay.field!r}: it is not a date field (ISO dates such as "
                f"'2026-11-01' in the catalog); date fields: {', '.join(dates) or '(none in this catalog)'}."
            )
        if rules.decay is not None and rules.decay.target is not None and iso_datetime(rules.decay.target) is None:
            raise ConfigError(f"rules.decay.target {rules.decay.target!r} is not an ISO date such as '2026-12-01'.")
        return rules

    def _formula(self, rules: RankingRules) -> ScoreFormula | None:
        if not rules.boost and rules.decay is None:
            return None
        decay = rules.decay
        target = iso_datetime(decay.target) if decay and decay.target else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kinds = self.store.payload_index_kinds(ITEMS)
        return ScoreFormula(
            boosts=tuple(rules.boost.items()),
            bool_fields=tuple(f for f in rules.boost if kinds.get(f) == "bool"),
            decay_field=decay.field if decay else None,
            decay_target=target,
            decay_scale_s=decay.scale_days * 86400.0 if decay else 0.0,
            decay_weight=decay.weight if decay else 0.0,
            decay_kind=decay.kind if decay else "exp",
            candidates=rules.candidates,
        )

    def _weights(self, rules: RankingRules | None) -> dict[str, float]:
        """The collaborative and popularity weights of a query (configured, or the request's)."""
        cfg = self.config.collaborative
        weight = cfg.weight if rules is None or rules.collaborative_weight is None else rules.collaborative_weight
        popularity = cfg.popularity_weight if rules is None or rules.popularity_weight is None else rules.popularity_weight
        return {"weight": weight, "popularity_weight": popularity}

    def _explanation_vectors(self, item_ids: list[str]) -> dict[str, np.ndarray]:
        """Items' vectors (text + collaborative parts) for the reasons (history items and the
        hits), from a bounded in-process cache; one store read fills what is missing. This
        process's writes evict what they change, `refresh` clears it. Recommendations
        concentrate on a small share of the catalogue, so most hits are cached."""
        cache = self._vector_cache
        found = {i: v for i in item_ids if (v := cache.touch(i)) is not None}
        missing = [i for i in item_ids if i not in found]
        if missing:
            width, points = self.layout.user_dim, {point_id("item", i): i for i in missing}
            generation = cache.generation
            for hit in self.store.retrieve(ITEMS, list(points), with_vectors=True, with_payload=False):
                found[points[hit.id]] = cache.put(points[hit.id], hit.vector[:width], generation)
        return {i: found[i] for i in item_ids if i in found}

    def _apply(self, events: list[Event], on_unknown: str) -> tuple[dict[str, UserProfile], RecordReport]:
        item_ids = list(dict.fromkeys(e.item_id for e in events))
        items = {h.payload["item_id"]: h for h in self._item_hits(item_ids, missing_ok=True)} if item_ids else {}
        unknown = [i for i in item_ids if i not in items]
        if unknown and on_unknown == "raise":
            raise NotIndexedError(
                f"{len(unknown)} item id(s) not in the catalog, e.g. {unknown[:5]}; nothing was "
                "recorded. Index them first with index_items(), or pass on_unknown_item='skip'."
            )
        given = events
        order = sorted(range(len(events)), key=lambda n: events[n].ts)
        outcomes = ["unknown_item"] * len(events)
        by_user: dict[str, list[int]] = defaultdict(list)
        for n in order:
            if events[n].item_id in items:
                by_user[events[n].user_id].append(n)
        skipped = len(events) - sum(map(len, by_user.values()))
        config = self.config.profile
        disliked = {e.item_id for e in events if e.kind in config.negative_kinds and e.item_id in items}
        near = self._near_duplicates(sorted(disliked)) if disliked else {}

        def applier(user_events: list[int]):
            def apply(profile: UserProfile) -> int:
                for n in user_events:  # a retry after a lost race decides again
                    event = given[n]
                    added = profile.add(event, items[event.item_id].payload, config)
                    outcomes[n] = "recorded" if added else "duplicate"
                    if added and event.kind in config.negative_kinds:
                        strength = profile.negatives.get(event.item_id, 0.0)
                        for other, similarity in near.get(event.item_id, []):
                            profile.negatives[other] = max(profile.negatives.get(other, 0.0), strength * similarity)
                return outcomes_count(user_events)

            return apply

        def outcomes_count(user_events: list[int]) -> int:
            return sum(outcomes[n] == "recorded" for n in user_events)

        profiles, applied = self._update_users({uid: applier(ns) for uid, ns in by_user.items()})
        self._log_change({"op": "events", "events": [given[n].model_dump() for ns in by_user.values() for n in ns]})
        recorded = sum(applied.values())
        duplicates = len(events) - skipped - recorded
        return profiles, RecordReport(recorded, len(by_user), duplicates, skipped, outcomes=outcomes)

    def _update_users(self, changes: dict[str, Any]) -> tuple[dict[str, UserProfile], dict[str, int]]:
        """The one write path of profiles: apply `changes[uid](profile) -> changes made` to each
        user's stored profile (or a new one) and write those that changed, each conditional on
        the revision it read; users whose profile another writer changed meanwhile are re-read and
        re-applied. Then the popularity of items newly seen is recounted.

        Returns the written profiles and, per user, the changes applied.
        """
        written: dict[str, UserProfile] = {}
        applied: dict[str, int] = {}
        recount: set[str] = set()
        todo = dict(changes)
        with self._locked_users(list(changes)):
            for _ in range(_WRITE_ATTEMPTS):
                stored = self._read_users(list(todo), fresh=True)
                batch: dict[str, tuple[UserProfile, Hit | None, list[str]]] = {}
                for uid, change in todo.items():
                    hit = stored.get(uid)
                    profile = UserProfile.model_validate(hit.payload) if hit else UserProfile(user_id=uid)
                    before = len(profile.seen)
                    applied[uid] = change(profile)
                    if applied[uid]:
                        batch[uid] = (profile, hit, profile.seen[before:])
                lost = self._write_profiles(batch)
                for uid, (profile, hit, new_items) in batch.items():
                    if uid not in lost:
                        written[uid] = profile
                        recount.update(new_items, hit.payload.get(PENDING, []) if hit else [])
                todo = {uid: todo[uid] for uid in lost}
                if not todo:
                    break
                _backoff()
            else:
                raise ConcurrentWriteError(
                    f"{len(todo)} user(s), e.g. {next(iter(todo))!r}, kept changing under this write; "
                    "nothing was recorded for them. Send their events again (re-sent events are not "
                    "counted twice)."
                )
        if recount:
            self._recount_popularity(sorted(recount))
            self._clear_pending(written)
        return written, applied

    def _write_profiles(self, batch: dict[str, tuple[UserProfile, Hit | None, list[str]]]) -> set[str]:
        """Write profiles with fresh user vectors, each only if its stored revision is still the
        one read (or, for a new user, if none was stored meanwhile). Returns the users not
        written because another writer got there first."""
        if not batch:
            return set()
        self._ensure_collection(USERS)
        vectors = self._user_vectors([profile for profile, _, _ in batch.values()])
        tokens = {uid: _new_revision() for uid in batch}
        payloads = []
        for uid, (profile, hit, new_items) in batch.items():
            pending = sorted({*(hit.payload.get(PENDING, []) if hit else []), *new_items})
            payloads.append({**profile.model_dump(), REVISION: tokens[uid], PENDING: pending})
        uids = list(batch)
        ids = [point_id("user", u) for u in uids]
        # one engine write for the whole batch (all of it or none after a crash): new users are
        # inserted, stored ones replaced only where their revision is still the one read
        only_if = _same_revision([_revision(hit) if hit else "" for _, hit, _ in batch.values()])
        self._forget_cached_profiles(uids)
        self.store.upsert(USERS, ids, vectors, payloads, only_if=only_if)
        self._forget_cached_profiles(uids)
        stored = self._stored_revisions(uids)
        lost = {uid for uid in uids if stored.get(uid) != tokens[uid]}
        self.write_conflicts += len(lost)
        return lost

    def _rewrite_users(self, hits: list[Hit], vector_of) -> None:
        """Replace stored users' vectors with `vector_of(profile, hit)`, profiles unchanged; a
        user written meanwhile by someone else is re-read and done again."""
        todo = {h.payload["user_id"]: h for h in hits}
        for _ in range(_WRITE_ATTEMPTS):
            if not todo:
                return
            uids = list(todo)
            tokens = {uid: _new_revision() for uid in uids}
            vectors = np.stack([vector_of(UserProfile.model_validate(h.payload), h) for h in todo.values()])
            payloads = [{**h.payload, REVISION: tokens[uid]} for uid, h in todo.items()]
            ids = [point_id("user", u) for u in uids]
            self._forget_cached_profiles(uids)
            only_if = _same_revision([_revision(h) for h in todo.values()])
            self.store.upsert(USERS, ids, vectors, payloads, only_if=only_if, mode="update_only")
            stored = self._stored_revisions(uids)
            lost = [uid for uid in uids if uid in stored and stored[uid] != tokens[uid]]
            todo = self._read_users(lost, fresh=True) if lost else {}
        if todo:
            log.warning("%d user vectors changed during the write and keep their previous vector", len(todo))

    def _user_vectors(self, profiles: list[UserProfile]) -> np.ndarray:
        """Each profile's vector: its summary's text vector blended with its history's item
        vectors (and the pooled collaborative part on hybrid stores)."""
        config, layout = self.config.profile, self.layout
        summaries = [p.summary(config) for p in profiles]
        summary_vectors = self.encoder.encode(summaries, batch_size=self.config.encode_batch_size)
        history_ids = list(dict.fromkeys(e.item_id for p in profiles for e in p.history))
        hits = self._item_hits(history_ids, with_vectors=True, missing_ok=True) if history_ids else []
        text = {h.payload["item_id"]: layout.text_part(h.vector) for h in hits}
        cf = {h.payload["item_id"]: layout.cf_part(h.vector) for h in hits} if layout.hybrid else {}
        vectors = []
        for summary, profile in zip(summary_vectors, profiles):
            weights = profile.pooling_weights(config)
            text_vector = user_vector(summary, text, weights, config.text_weight)
            vectors.append(layout.user(text_vector, pool_vectors(cf, weights) if layout.hybrid else None))
        return np.stack(vectors)

    def save_profiles(self, profiles: list[UserProfile]) -> None:
        """Store profiles as they are (e.g. carried into a new version by re-indexing), with
        vectors made from them; item popularity is recounted."""
        by_id = {p.user_id: p for p in profiles}

        def replace(uid: str):
            def apply(profile: UserProfile) -> int:
                for name, value in by_id[uid]:
                    setattr(profile, name, value)
                profile.model_post_init(None)  # its sets of seen items and event keys
                return 1

            return apply

        self._update_users({uid: replace(uid) for uid in by_id})

    def _read_users(self, user_ids: list[str], *, fresh: bool = False) -> dict[str, Hit]:
        """Stored user points (payload and vector) by user id; users being erased are left out.
        Unless `fresh`, served from the in-process cache on the embedded store."""
        cache = self._profile_cache if not fresh else None
        found: dict[str, Hit] = {}
        if cache is not None:
            for uid in user_ids:
                if (hit := cache.touch(uid)) is not None:
                    found[uid] = hit
        missing = [u for u in user_ids if u not in found]
        if missing and self.store.has_collection(USERS):
            generation = self._profile_cache.generation if self._profile_cache is not None else None
            for hit in self.store.retrieve(USERS, [point_id("user", u) for u in missing], with_vectors=True):
                if hit.payload.get(ERASING):
                    continue
                found[hit.payload["user_id"]] = hit
                if self._profile_cache is not None:
                    self._profile_cache.put(hit.payload["user_id"], hit, generation)
        return found

    def _stored_revisions(self, user_ids: list[str]) -> dict[str, str | None]:
        hits = self.store.retrieve(USERS, [point_id("user", u) for u in user_ids])
        return {h.payload["user_id"]: _revision(h) for h in hits}

    def _forget_cached_profiles(self, user_ids: list[str] | None = None) -> None:
        """Evict users' cached points (all of them when `user_ids` is None)."""
        if self._profile_cache is None:
            return
        if user_ids is None:
            self._profile_cache.clear()
        else:
            self._profile_cache.invalidate(user_ids)

    def _locked_users(self, user_ids: list[str]):
        """Hold the in-process locks of these users (taken in a fixed order: no deadlock)."""
        stripes = sorted({hash(u) % _USER_LOCK_STRIPES for u in user_ids})
        return _Locks([self._user_locks[i] for i in stripes])

    def _recount_popularity(self, item_ids: list[str]) -> None:
        """Set each item's popularity to the number of stored users who have seen it.

        A count is idempotent, so concurrent writers and crash repair can all recount without
        double counting; after writing, the items are counted again until a count matches what
        is stored (a writer that counted earlier may have written an older figure)."""
        ids = list(dict.fromkeys(item_ids))
        if not ids or not self.store.has_collection(ITEMS):
            return
        for _ in range(_WRITE_ATTEMPTS):
            counts = self._count_seen(ids)
            stored = {h.payload["item_id"]: h.payload.get("popularity", 0.0) for h in self._item_hits(ids, missing_ok=True)}
            stale: dict[float, list[str]] = defaultdict(list)
            for item_id, value in stored.items():
                if value != counts.get(item_id, 0.0):
                    stale[counts.get(item_id, 0.0)].append(point_id("item", item_id))
            if not stale:
                return
            for value, pids in stale.items():
                self.store.set_payload(ITEMS, pids, {"popularity": value})
        log.warning("popularity of %d items kept changing; it is recounted at the next write or fit", len(ids))

    def _count_seen(self, item_ids: list[str]) -> dict[str, float]:
        """How many stored users have seen each item."""
        if not self.store.has_collection(USERS):
            return {}
        if len(item_ids) <= _RECOUNT_BY_QUERY_MAX:
            return {i: float(self.store.count(USERS, Filter([Condition("seen", "eq", i)]))) for i in item_ids}
        wanted, counts = set(item_ids), Counter()
        for hit in self.store.scroll(USERS):
            counts.update(wanted.intersection(hit.payload.get("seen", [])))
        return {i: float(counts[i]) for i in item_ids}

    def _clear_pending(self, profiles: dict[str, UserProfile]) -> None:
        """Drop the pending popularity marks of users whose write is now counted (only where no
        writer has written since: its own marks must stay until it recounts)."""
        hits = self.store.retrieve(USERS, [point_id("user", u) for u in profiles])
        done = [h for h in hits if h.payload.get(PENDING)]
        if done:
            only_if = _same_revision([_revision(h) for h in done])
            self.store.set_payload(USERS, [h.id for h in done], {PENDING: []}, only_if=only_if)
            self._forget_cached_profiles([h.payload["user_id"] for h in done])

    def _prepare_users(self) -> None:
        """Index the user fields the write path filters on (stores made before they existed),
        and finish what a crashed writer left: pending popularity counts and erasures."""
        if not self.store.has_collection(USERS):
            return
        with self._schema_lock:
            known = self.store.payload_indexes(USERS)
            for field_name, kind in _USER_INDEXES.items():
                if field_name not in known:
                    self.store.create_payload_index(USERS, field_name, kind)
        notice = getattr(self.store, "take_erasure_notice", None)
        if notice is not None and notice() and self.store.has_collection(ITEMS):
            self._recount_popularity([h.payload["item_id"] for h in self.store.scroll(ITEMS)])
        unfinished = list(self.store.scroll(USERS, filter=Filter([Condition(PENDING, "nonempty")])))
        if not unfinished:
            return
        erased = [h.payload["user_id"] for h in unfinished if h.payload.get(ERASING)]
        items = sorted({i for h in unfinished for i in h.payload.get(PENDING, [])})
        log.info("finishing %d interrupted user writes (%d erasures)", len(unfinished), len(erased))
        if erased:
            self.store.delete(USERS, [point_id("user", u) for u in erased])
        self._recount_popularity(items)
        self._clear_pending({h.payload["user_id"]: None for h in unfinished if not h.payload.get(ERASING)})

    def _item_hits(self, item_ids: list[str], *, with_vectors: bool = False, missing_ok: bool = False) -> list[Hit]:
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

    def _check_k(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k={k!r} is not valid; expected an integer >= 1, e.g. k=10.")
        if k > self.config.max_k:
            raise ConfigError(
                f"k={k} is larger than max_k={self.config.max_k}; ask for fewer results or raise "
                "RecommenderConfig.max_k."
            )
        if not self.store.has_collection(ITEMS):
            raise NotIndexedError("No items are indexed yet; call index_items() with a catalog first.")
        return int(min(k, max(self.store.count(ITEMS), 1)))

    def check_filter(self, spec: dict[str, Any] | None) -> None:
        """Raise `ConfigError` (naming the field, the value and the fix) unless `spec` is a
        filter this store can apply: known catalog fields, values of the kind each holds."""
        self._filter(spec)

    def _filter(self, spec: dict[str, Any] | None):
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

    def _ensure_collection(self, name: str) -> None:
        with self._schema_lock:  # two first writers must not both create it
            self._create_collection(name)

    def _create_collection(self, name: str) -> None:
        if self.store.has_collection(name):
            if name == ITEMS and self.layout.hybrid and CF_INTERACTIONS not in self.store.payload_indexes(ITEMS):
                self.store.create_payload_index(ITEMS, CF_INTERACTIONS, "float")
            return
        fp, layout = self.encoder.fingerprint, self.layout
        metadata = {"model": fp.to_dict(), "template": self.config.template, "layout": layout.to_dict()}
        self.store.create_collection(name, layout.item_dim if name == ITEMS else layout.user_dim, metadata)
        if name == ITEMS:
            for field_name, kind in _BASE_INDEXES.items():
                self.store.create_payload_index(ITEMS, field_name, kind)
            if layout.hybrid:
                self.store.create_payload_index(ITEMS, CF_INTERACTIONS, "float")
        else:
            for field_name, kind in _USER_INDEXES.items():
                self.store.create_payload_index(USERS, field_name, kind)

    def _impute_cf(self, text_vectors: np.ndarray) -> np.ndarray:
        """Collaborative parts for new items: the similarity-weighted mean of the stored cf parts
        of their nearest items by text among those with enough interactions at the last fit."""
        layout, cfg = self.layout, self.config.collaborative
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

    def _ensure_indexes(self, items: list[Item]) -> None:
        """Index every filterable extra column before its values are loaded."""
        with self._schema_lock:
            self._create_indexes(items)

    def _create_indexes(self, items: list[Item]) -> None:
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

    def _check_model(self, name: str) -> None:
        if not self.store.has_collection(name):
            return
        stored = ModelFingerprint.from_dict(self.store.collection_metadata(name)["model"])
        current = self.encoder.fingerprint
        if not stored.compatible_with(current):
            raise ModelMismatchError(
                f"This store's {name} were encoded with {stored.describe()}, but the encoder in use "
                f"is {current.describe()}. Open the store with model={stored.name!r}, or re-index "
                "the catalog into a new store (semrec reindex --rebuild) to switch models."
            )


def _users_of(entry: dict[str, Any]) -> set[str]:
    """The user point ids a change-log entry writes."""
    users = {e["user_id"] for e in entry.get("events", [])}
    if "user_id" in entry:
        users.add(entry["user_id"])
    return {point_id("user", u) for u in users}


class _Locks:
    """Several locks held together (acquired in the given order, released in reverse)."""

    def __init__(self, locks: list[threading.Lock]) -> None:
        self.locks = locks

    def __enter__(self) -> None:
        for lock in self.locks:
            lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        for lock in reversed(self.locks):
            lock.release()


def _revision(hit: Hit) -> str | None:
    return hit.payload.get(REVISION)


def _new_revision() -> str:
    return uuid.uuid4().hex


def _same_revision(revisions: list[str | None]) -> Filter:
    """Matches points whose revision is one of `revisions` (revisions are unique, so a batch
    of users shares one condition); None also matches points stored before revisions existed;
    "" (a user not stored when read) matches nothing."""
    should = [Condition(REVISION, "any", [r for r in revisions if r] or [""])]
    if None in revisions:
        should.append(Condition(REVISION, "empty"))
    return Filter(should=should)


def _backoff() -> None:
    """A short random pause before retrying a write another writer won."""
    time.sleep(random.uniform(0.0005, 0.005))


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
