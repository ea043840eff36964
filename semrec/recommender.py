"""The `Recommender` facade: catalog -> encoder -> vector store, users updated per event.

`Recommender` composes small parts, each owning its state and the invalidation of its cache
(see `semrec/ARCHITECTURE.md`): the `Schema` (names, layout, model, collections and indexes),
the `ItemStore` (item writes and reads, popularity, the item-vector cache), the
`ProfileService` (the user write path and the profile cache) and the `Ranker` (queries). The
collaborative fit is `fit_collaborative`, a function from the store to the store, which the
facade and the re-index jobs both call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from .catalog import DEFAULT_TEMPLATE, Item, Reject, canonical_id, load_catalog, read_table, write_rejects
from .collaborative import CollaborativeConfig, VectorLayout, fit_item_parts
from .language import language_warning
from .encoders import Encoder, load_encoder
from .errors import ConfigError, NotIndexedError
from .items import ItemStore
from .profiles import Event, ProfileConfig, UserProfile, events_from_frame, make_event
from .ranker import Ranker
from .ranking import RankingRules, Results
from .schema import CF_INTERACTIONS, ERASING, ITEMS, PENDING, REVISION, STORE_MANAGED_KEYS, USER_STATE_KEYS, USERS, Schema
from .store import Hit, VectorStore, open_store
from .users import ProfileService

__all__ = [
    "CF_INTERACTIONS",
    "ERASING",
    "ITEMS",
    "PENDING",
    "REVISION",
    "STORE_MANAGED_KEYS",
    "USERS",
    "USER_STATE_KEYS",
    "CollaborativeReport",
    "IndexReport",
    "Recommender",
    "RecommenderConfig",
    "RecordReport",
    "fit_collaborative",
]

log = logging.getLogger(__name__)


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
        background_updates: False: `record` returns once everything an event changes is
            stored. True (what `semrec serve` uses): `record` returns once the profile is
            stored (seen items, history, its pooled vectors, with the last encoded summary);
            the new summary's text vector and the items' popularity are updated on background
            threads, coalescing concurrent writes, so the model and the popularity recount no
            longer bound events per second. `wait_for_background()` waits for them; after a
            crash the store finishes them when it next opens.
        collaborative: the collaborative signal and popularity prior fused into every
            recommendation (`dim=0`: a text-only store). Fit with `fit_collaborative()`.
    """

    model_config = ConfigDict(extra="forbid")

    unknown_user: Literal["popular", "raise"] = "popular"
    max_k: int = Field(1000, ge=1)
    diversity: float = Field(0.0, ge=0, le=1)
    template: str = DEFAULT_TEMPLATE
    encode_batch_size: int = Field(64, ge=1)
    background_updates: bool = False
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    collaborative: CollaborativeConfig = Field(default_factory=CollaborativeConfig)


@dataclass
class IndexReport:
    """What `index_items` did."""

    indexed: int
    rejected: list[Reject] = field(default_factory=list)
    rejects_path: Path | None = None
    #: Set when an English-only model meets a catalog whose names are mostly in another script.
    language_warning: str | None = None

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

    @classmethod
    def of(cls, events: list[Event], outcomes: list[str]) -> "RecordReport":
        """The report of `events` from their outcomes."""
        recorded, skipped = outcomes.count("recorded"), outcomes.count("unknown_item")
        users = {e.user_id for e, outcome in zip(events, outcomes) if outcome != "unknown_item"}
        return cls(recorded, len(users), len(events) - skipped - recorded, skipped, outcomes=outcomes)


def fit_collaborative(items: ItemStore, users: ProfileService, config: RecommenderConfig, *, seed: int = 0) -> CollaborativeReport:
    """(Re)fit the collaborative part of every stored item from the stored users' interactions,
    and re-pool the users' collaborative parts (see `Recommender.fit_collaborative`)."""
    started = time.perf_counter()
    layout, cfg = items.schema.layout, config.collaborative
    if not layout.hybrid:
        raise ConfigError(
            "This store was created text-only (collaborative dim 0), so it has no room for "
            "collaborative vectors. Re-index into a new store with "
            "RecommenderConfig(collaborative=CollaborativeConfig(dim=512)) to use them."
        )
    hits = items.all(with_vectors=True)
    if not hits:
        raise NotIndexedError("No items are indexed yet; call index_items() with a catalog first.")
    points = users.points()
    matrix = _interactions(points, hits)
    text = layout.text_part(np.stack([h.vector for h in hits]))
    _, cf, pop = fit_item_parts(matrix, text, cfg.model_copy(update={"dim": layout.collaborative}), seed=seed)
    counts = np.asarray(matrix.sum(0)).ravel()
    items.write_fitted(hits, layout.items(text, cf, pop), counts)
    users.repool(points, {h.payload["item_id"]: cf[j] for j, h in enumerate(hits)})
    # events recorded while fitting changed popularity after it was counted above
    items.recount_popularity([h.payload["item_id"] for h in hits])
    return CollaborativeReport(
        len(points), len(hits), int(matrix.nnz), int((counts >= cfg.min_interactions).sum()),
        round(time.perf_counter() - started, 2),
    )


def _interactions(users: list[Hit], items: list[Hit]) -> sp.csr_matrix:
    """Users x items: 1 where the user has seen the item (from the stored profiles)."""
    column = {h.payload["item_id"]: j for j, h in enumerate(items)}
    rows, cols = [], []
    for r, user in enumerate(users):
        seen = [column[i] for i in user.payload.get("seen", []) if i in column]
        rows += [r] * len(seen)
        cols += seen
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), len(items)))


class Recommender:
    """Semantic recommendations from one vector space for items and users.

    Composes a `schema`, an `items` store, a `profiles` service and a `ranker` (public
    attributes; batch jobs use the same parts).

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
        self.schema = Schema(store, encoder.fingerprint, self.config)
        self.items = ItemStore(store, self.schema, self.config)
        self.profiles = ProfileService(store, self.schema, self.items, encoder, self.config)
        self.ranker = Ranker(store, self.schema, self.items, self.profiles, encoder, self.config)
        self._open_version()

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
        self.profiles.close()  # background updates stop first (what is left stays marked)
        self.store.close()

    def wait_for_background(self, timeout: float | None = None) -> bool:
        """Wait until the summaries and popularity of every write so far are updated
        (`background_updates=True`); False if `timeout` seconds passed first."""
        return self.profiles.wait_for_background(timeout)

    def switch_pending(self) -> bool:
        """Whether a blue-green re-index switched the embedded store since it was opened or last
        refreshed (one `stat`; always False on a Qdrant server, whose aliases switch by themselves)."""
        pending = getattr(self.store, "switch_pending", None)
        return bool(pending is not None and pending())

    def refresh(self) -> bool:
        """Follow a blue-green re-index (`semrec reindex`): True when the store switched version.

        An embedded store keeps serving the version it opened until this is called (one `stat`
        when nothing changed); a server's aliases switch by themselves. The new version's model
        is checked, so a reader whose model no longer matches gets `ModelMismatchError`.
        """
        refresh = getattr(self.store, "refresh", None)
        if refresh is None or not refresh():
            return False
        self.schema.forget_cached()
        self.items.forget_cached()
        self.profiles.forget_cached()
        self._open_version()
        return True

    def _open_version(self) -> None:
        """Check the stored model, finish what a crashed writer left, replay logged writes."""
        self.schema.check_models()
        self.profiles.prepare()
        self.profiles.replay_changes()

    def __enter__(self) -> "Recommender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def layout(self) -> VectorLayout:
        """How the stored vectors are laid out: fixed when the item collection is created."""
        return self.schema.layout

    @property
    def n_items(self) -> int:
        return self.items.count()

    @property
    def write_conflicts(self) -> int:
        """Writes that lost a compare-and-swap to another writer and were re-applied."""
        return self.profiles.write_conflicts

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
        warning = language_warning([i.name for i in catalog.items], self.encoder) if catalog.items else None
        if warning:
            log.warning("%s", warning)
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
        return IndexReport(len(catalog.items), catalog.rejects, path, language_warning=warning)

    def upsert_items(self, items: list[Item], vectors: np.ndarray) -> None:
        """Store validated items with vectors made elsewhere (e.g. by a distributed encoding job).

        Payload indexes for new fields are created before the points are written; an item's
        popularity is kept. Call `finish_indexing()` after a bulk load.
        """
        self.items.upsert(items, vectors)

    def finish_indexing(self) -> None:
        """Build the ANN index after a bulk load (done by `index_items` itself)."""
        self.items.finish_indexing()

    def delete_items(self, item_ids: list[Any]) -> int:
        """Remove items from the catalog (they are no longer recommended; users' histories keep
        them). Returns how many were stored."""
        return self.items.delete([canonical_id(i) for i in item_ids])

    def fit_collaborative(self, *, seed: int = 0) -> CollaborativeReport:
        """(Re)fit the collaborative part of every item from the users' interactions so far.

        Who interacted with what comes from the stored profiles (every item each user has
        seen). Items get their collaborative vector (cold ones shrunk towards their text
        neighbours') and a popularity component; users' collaborative parts are re-pooled. Run
        it after loading events and then periodically (e.g. nightly), like any collaborative
        model; between fits, events still update users in real time, and new items borrow their
        text neighbours' collaborative vectors.
        """
        return fit_collaborative(self.items, self.profiles, self.config, seed=seed)

    def item(self, item_id: Any) -> dict[str, Any]:
        """The stored fields of one item."""
        return self.items.hits([canonical_id(item_id)])[0].payload

    def item_vectors(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Every stored item's fields and its text vector (for exploration and plots)."""
        return self.items.text_vectors()

    # users -------------------------------------------------------------------------------------
    def record(self, user_id: Any, item_id: Any, kind: str = "view", ts: Any = None, weight: float = 1.0) -> UserProfile:
        """Record one event; the very next `recommend` for this user reflects it.

        Raises `NotIndexedError` (and records nothing) when the item is not in the catalog.
        Recording the same event (user, item, kind, time) again changes nothing.
        """
        event = make_event(user_id, item_id, kind, ts, weight)
        profiles, _ = self.profiles.record([event], "raise")
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
        report = self.record_events(parsed, on_unknown_item=on_unknown_item)
        report.rejected = rejects
        return report

    def record_events(self, events: list[Event], *, on_unknown_item: Literal["raise", "skip"] = "skip") -> RecordReport:
        """Record validated events (see `make_event`); `report.outcomes` says, per event, whether
        it was recorded, already stored, or for an item not in the catalog."""
        events = list(events)
        _, outcomes = self.profiles.record(events, on_unknown_item)
        return RecordReport.of(events, outcomes)

    def set_interests(self, user_id: Any, interests: list[str] | str) -> UserProfile:
        """Declare what a user follows (e.g. ["electronics", "smart devices"]); used in their
        summary, and enough on its own to recommend to a user without events."""
        return self.profiles.set_interests(user_id, interests)

    def profile(self, user_id: Any) -> UserProfile | None:
        """The stored profile of a user, or None."""
        return self.profiles.profile(user_id)

    def user_ids(self) -> list[str]:
        """Every stored user's id."""
        return self.profiles.user_ids()

    def user_vector(self, user_id: Any) -> np.ndarray | None:
        """The text vector of a user, in the items' text space (None for an unknown user)."""
        return self.profiles.text_vector(user_id)

    def forget_user(self, user_id: Any) -> bool:
        """Remove every trace of a user: profile, vector, and their share of item popularity.

        The user is first marked as being erased (one write), then deleted; a crash in between
        is finished when the store next opens.
        """
        return self.profiles.forget_user(user_id)

    def save_profiles(self, profiles: list[UserProfile]) -> None:
        """Store profiles as they are (e.g. carried into a new version by re-indexing), with
        vectors made from them; item popularity is recounted."""
        self.profiles.save_profiles(profiles)

    def replay_changes(self) -> None:
        """Apply the user writes made to an older version while this one was being built."""
        self.profiles.replay_changes()

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
        return self.ranker.recommend(user_id, k, filter, exclude_seen, diversity, explain_results, negatives, rules)

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
        self.check_filter(filter)  # a bad filter fails before any work
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
        return self.ranker.search(text, k, filter, diversity, rules)

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
        return self.ranker.similar(item_id, k, filter, diversity, negatives, rules)

    def popular(self, k: int = 10, filter: dict[str, Any] | None = None) -> Results:
        """The items with the most distinct users, most popular first."""
        return self.ranker.popular(k, filter)

    def check_filter(self, spec: dict[str, Any] | None) -> None:
        """Raise `ConfigError` (naming the field, the value and the fix) unless `spec` is a
        filter this store can apply: known catalog fields, values of the kind each holds."""
        self.schema.filter(spec)
