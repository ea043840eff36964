"""The profile service: every write of user points, the profile cache, erasure and replay.

Concurrent writers stay correct at three levels: in-process, writers of one user queue on a lock
stripe; across processes, each profile write is conditional on the revision token it read
(compare-and-swap), and the loser re-reads and re-applies; after a crash, the items a write left
uncounted (its pending marks) are recounted and an interrupted erasure is finished when the
store next opens (`prepare`). During a blue-green rebuild, writes are logged for the new version,
which replays them (`replay_changes`).

Example:
    >>> users = ProfileService(store, schema, items, encoder, RecommenderConfig())
    >>> users.prepare()
    >>> profiles, outcomes = users.record([make_event("u1", "el-001")], "raise")
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .catalog import canonical_id
from .encoders import Encoder
from .errors import ConcurrentWriteError, ConfigError, NotIndexedError
from .group_commit import GroupCommit
from .items import ItemStore
from .profiles import Event, UserProfile, pool_vectors, user_vector
from .schema import ERASING, ITEMS, PENDING, REVISION, SUMMARY_OF, SUMMARY_STALE, SUMMARY_VECTOR, USERS, Schema, pack_user, unpack_user
from .store import Hit, VectorStore, point_id
from .store.base import Condition, Filter, LRUCache

if TYPE_CHECKING:  # the settings model is defined (and exported) with the facade
    from .recommender import RecommenderConfig

log = logging.getLogger(__name__)

#: Stored user points (profile payload and vector) kept in memory between `recommend` calls, on
#: the embedded store only: its folder lock makes this process the only writer, and every write
#: to a profile here evicts it.
_PROFILE_CACHE_USERS = 2_000
#: Compare-and-swap attempts before a write gives up with `ConcurrentWriteError`.
_WRITE_ATTEMPTS = 30
#: Concurrent `record` calls are written together up to about this many events per round.
_MAX_EVENTS_PER_ROUND = 5_000
#: Users per background round, and summaries per encoder batch (small batches run in parallel on
#: the fast backends' streams and pad less).
_BACKGROUND_ROUND = 256
_SUMMARY_BATCH = 8
#: After each background round (summaries, popularity), rest this many times as long as it took:
#: background work then takes at most half of a core while requests run (more writes coalesce).
_BACKGROUND_REST = 1.0
#: Popularity rounds start at most this often (seconds): a round's engine calls cost about the
#: same for one user as for hundreds, and popularity is one small term of the ranking.
_POPULARITY_INTERVAL = 0.5
#: In-process writers of different users run in parallel; one user's writers queue (lock striping).
_USER_LOCK_STRIPES = 64
#: The user fields the popularity bookkeeping reads (not the profile).
_STATE = ["user_id", REVISION, PENDING, ERASING]


class ProfileService:
    """User profiles and their vectors: the one write path of the user collection.

    Args:
        store: the vector store.
        schema: names, layout and collection creation.
        items: the items events refer to (read for their fields and vectors; their popularity is
            recounted after each write).
        encoder: encodes each profile's summary text.
        config: the profile settings and the encoding batch size.
    """

    def __init__(self, store: VectorStore, schema: Schema, items: ItemStore, encoder: Encoder, config: RecommenderConfig) -> None:
        self.store = store
        self.schema = schema
        self.items = items
        self.encoder = encoder
        self.config = config
        self._profile_cache = LRUCache(_PROFILE_CACHE_USERS) if store.kind == "edge" else None  # user id -> Hit
        self._user_locks = [threading.Lock() for _ in range(_USER_LOCK_STRIPES)]
        #: Writes that lost a compare-and-swap to another writer and were re-applied.
        self.write_conflicts = 0
        #: Concurrent `record` calls are applied together, one round at a time.
        self._commits = GroupCommit(self._record_round, max_batch=_MAX_EVENTS_PER_ROUND, size=lambda r: len(r[0]))
        #: Background updates: users whose summary was written but not yet encoded, and users
        #: whose newly seen items are not yet recounted (their pending marks are still set).
        self._summaries = _BackgroundQueue(self._encode_summaries, "semrec-summaries", "user summaries", rest=_BACKGROUND_REST)
        self._popularity = _BackgroundQueue(
            self._settle_popularity, "semrec-popularity", "popularity recounts", rest=_BACKGROUND_REST, interval=_POPULARITY_INTERVAL
        )

    # writes ------------------------------------------------------------------------------------
    def record(self, events: list[Event], on_unknown: str) -> tuple[dict[str, UserProfile], list[str]]:
        """Apply validated events; returns the profiles written and, per event in order,
        "recorded", "duplicate" (already stored) or "unknown_item". With `on_unknown="raise"`
        nothing is recorded if an item is not in the catalog (`NotIndexedError`).

        Concurrent calls are written together (group commit): one summary-encoding batch, one
        engine write and one popularity recount for all of them; each call returns (or raises)
        only when its own events are stored."""
        return self._commits.submit((list(events), on_unknown))

    def _record_round(self, requests: list[tuple[list[Event], str]]) -> list[Any]:
        """Apply the `record` calls queued together: one write for all of them."""
        item_ids = list(dict.fromkeys(e.item_id for events, _ in requests for e in events))
        items = {h.payload["item_id"]: h for h in self.items.hits(item_ids, missing_ok=True)} if item_ids else {}
        results: list[Any] = []
        merged: list[Event] = []
        spans: list[tuple[int, int]] = []
        for events, on_unknown in requests:
            unknown = list(dict.fromkeys(e.item_id for e in events if e.item_id not in items))
            if unknown and on_unknown == "raise":
                results.append(NotIndexedError(
                    f"{len(unknown)} item id(s) not in the catalog, e.g. {unknown[:5]}; nothing was "
                    "recorded. Index them first with index_items(), or pass on_unknown_item='skip'."
                ))
                spans.append((0, 0))
                continue
            results.append(None)
            spans.append((len(merged), len(merged) + len(events)))
            merged.extend(events)
        profiles, outcomes = self._apply_events(merged, items) if merged else ({}, [])
        for n, (start, end) in enumerate(spans):
            if results[n] is None:
                users = {e.user_id for e in merged[start:end]}
                results[n] = ({u: p for u, p in profiles.items() if u in users}, outcomes[start:end])
        return results

    def _apply_events(self, events: list[Event], items: dict[str, Hit]) -> tuple[dict[str, UserProfile], list[str]]:
        """Write events whose known items are `items` (others are "unknown_item")."""
        given = events
        order = sorted(range(len(events)), key=lambda n: events[n].ts)
        outcomes = ["unknown_item"] * len(events)
        by_user: dict[str, list[int]] = defaultdict(list)
        for n in order:
            if events[n].item_id in items:
                by_user[events[n].user_id].append(n)
        config = self.config.profile
        disliked = {e.item_id for e in events if e.kind in config.negative_kinds and e.item_id in items}
        near = self.items.near_duplicates(sorted(disliked), config.near_duplicate) if disliked else {}

        def applier(user_events: list[int]):
            def apply(profile: UserProfile) -> int:
                for n in user_events:  # a retry after a lost race decides again
                    event = given[n]
                    added = profile.add(event, items[event.item_id].payload, config)
                    # found in a retry after this call added it: the write reported lost landed
                    # (a later write kept it), so it stays "recorded"
                    outcomes[n] = "recorded" if added or outcomes[n] == "recorded" else "duplicate"
                    if added and event.kind in config.negative_kinds:
                        strength = profile.negatives.get(event.item_id, 0.0)
                        for other, similarity in near.get(event.item_id, []):
                            profile.negatives[other] = max(profile.negatives.get(other, 0.0), strength * similarity)
                return sum(outcomes[n] == "recorded" for n in user_events)

            return apply

        profiles, _ = self._update_users({uid: applier(ns) for uid, ns in by_user.items()})
        self._log_change({"op": "events", "events": [given[n].model_dump() for ns in by_user.values() for n in ns]})
        return profiles, outcomes

    def set_interests(self, user_id: Any, interests: list[str] | str) -> UserProfile:
        """Declare what a user follows (e.g. ["electronics", "smart devices"])."""
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

    def forget_user(self, user_id: Any) -> bool:
        """Remove every trace of a user: profile, vector, and their share of item popularity.

        The user is first marked as being erased (one write), then deleted; a crash in between
        is finished when the store next opens.
        """
        uid = canonical_id(user_id, "user_id")
        pid = point_id("user", uid)
        with self._locked_users([uid]):
            for _ in range(_WRITE_ATTEMPTS):
                hit = self.read([uid]).get(uid)
                if hit is None:
                    return False
                rev, pending = _revision(hit), sorted({*hit.payload.get(PENDING, []), *hit.payload.get("seen", [])})
                token = _new_revision()
                self.forget_cached([uid])
                self.store.set_payload(USERS, [pid], {ERASING: True, PENDING: pending, REVISION: token}, only_if=_same_revision([rev]))
                if self._stored_revisions([uid]).get(uid) == token:
                    break
                _backoff()
            else:
                raise ConcurrentWriteError(f"User {uid!r} kept changing while being erased; try again.")
            self._finish_erasure([uid], pending)
        return True

    def repool(self, hits: list[Hit], by_item: dict[str, np.ndarray]) -> None:
        """After a collaborative fit: replace stored users' (`hits`) collaborative parts with
        their history pooled from `by_item` (each item's new collaborative part); text parts and
        profiles unchanged. Users who wrote meanwhile are re-read and done again."""
        self.forget_cached()
        layout = self.schema.layout

        def refit_user(profile: UserProfile, hit: Hit) -> np.ndarray:
            pooled = pool_vectors(by_item, profile.pooling_weights(self.config.profile))
            return layout.user(layout.text_part(hit.vector), pooled)

        for start in range(0, len(hits), 1000):
            # users who wrote since `hits` were read are re-read and refitted (compare-and-swap)
            self._rewrite_users(hits[start : start + 1000], refit_user)
        if hits:
            self.store.finish_bulk_load(USERS)

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
                self.record(events, "skip")
            for entry in entries:
                if entry.get("op") == "interests" and point_id("user", entry["user_id"]) not in erased:
                    self.set_interests(entry["user_id"], entry["interests"])

        if replayed := replay(apply):
            log.info("replayed %d user writes made during the rebuild of this version", replayed)

    def prepare(self) -> None:
        """Index the user fields the write path filters on (stores made before they existed),
        and finish what a crashed writer left: pending popularity counts and erasures."""
        if not self.store.has_collection(USERS):
            return
        self.schema.index_users()
        notice = getattr(self.store, "take_erasure_notice", None)
        if notice is not None and notice() and self.store.has_collection(ITEMS):
            self.items.recount_popularity([h.payload["item_id"] for h in self.store.scroll(ITEMS)])
        self._finish_pending()
        # last: the background encoder rewrites these users (their pending marks are settled by now)
        stale = [h.payload["user_id"] for h in self.store.scroll(USERS, filter=Filter([Condition(SUMMARY_STALE, "nonempty")]))]
        if stale:
            log.info("encoding %d user summaries left unencoded", len(stale))
            self._summaries.add(stale)

    def _finish_pending(self) -> None:
        """Recount the items of pending marks a crashed writer left, and finish its erasures."""
        unfinished = list(self.store.scroll(USERS, filter=Filter([Condition(PENDING, "nonempty")])))
        if not unfinished:
            return
        erased = [h.payload["user_id"] for h in unfinished if h.payload.get(ERASING)]
        items = sorted({i for h in unfinished for i in h.payload.get(PENDING, [])})
        log.info("finishing %d interrupted user writes (%d erasures)", len(unfinished), len(erased))
        self.items.recount_popularity(items)
        if erased:
            self._finish_erasure(erased, [])  # out of every version and the engine's files too
        self._clear_pending({h.payload["user_id"]: None for h in unfinished if not h.payload.get(ERASING)})

    def forget_cached(self, user_ids: list[str] | None = None) -> None:
        """Evict users' cached points (all of them when `user_ids` is None)."""
        if self._profile_cache is None:
            return
        if user_ids is None:
            self._profile_cache.clear()
        else:
            self._profile_cache.invalidate(user_ids)

    def wait_for_background(self, timeout: float | None = None) -> bool:
        """Wait until every background update queued so far is done (a summary encoding may
        queue a popularity recount, so summaries go first); False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for queue in (self._summaries, self._popularity):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not queue.wait(left):
                return False
        return True

    def close(self) -> None:
        """Stop background updates after their current round (users left are still marked in
        the store and finished when it next opens)."""
        self._summaries.close()
        self._popularity.close()

    # reads -------------------------------------------------------------------------------------
    def read(self, user_ids: list[str], *, fresh: bool = False) -> dict[str, Hit]:
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
                hit.payload = unpack_user(hit.payload)
                found[hit.payload["user_id"]] = hit
                if self._profile_cache is not None:
                    self._profile_cache.put(hit.payload["user_id"], hit, generation)
        return found

    def profile(self, user_id: Any) -> UserProfile | None:
        """The stored profile of a user, or None."""
        uid = canonical_id(user_id, "user_id")
        hits = self.read([uid])
        return UserProfile.model_validate(hits[uid].payload) if uid in hits else None

    def user_ids(self) -> list[str]:
        """Every stored user's id."""
        if not self.store.has_collection(USERS):
            return []
        return [h.payload["user_id"] for h in self.store.scroll(USERS) if not h.payload.get(ERASING)]

    def points(self) -> list[Hit]:
        """Every stored user point, with its vector and unfolded payload ([] before any user is stored)."""
        if not self.store.has_collection(USERS):
            return []
        hits = list(self.store.scroll(USERS, with_vectors=True))
        for hit in hits:
            hit.payload = unpack_user(hit.payload)
        return hits

    def text_vector(self, user_id: Any) -> np.ndarray | None:
        """The text vector of a user, in the items' text space (None for an unknown user)."""
        if not self.store.has_collection(USERS):
            return None
        hits = self.store.retrieve(USERS, [point_id("user", canonical_id(user_id, "user_id"))], with_vectors=True)
        return self.schema.layout.text_part(hits[0].vector) if hits else None

    # the write path ----------------------------------------------------------------------------
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
                stored = self.read(list(todo), fresh=True)
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
                    # a write reported lost may still have landed (another process replaced
                    # its revision before the check): its items are recounted too; a count is
                    # idempotent
                    recount.update(new_items, hit.payload.get(PENDING, []) if hit else [])
                    if uid not in lost:
                        written[uid] = profile
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
        if recount and self.config.background_updates:
            self._popularity.add(list(written))  # their pending marks say what to recount
        elif recount:
            self.items.recount_popularity(sorted(recount))
            self._clear_pending(written)
        return written, applied

    def _write_profiles(self, batch: dict[str, tuple[UserProfile, Hit | None, list[str]]]) -> set[str]:
        """Write profiles with fresh user vectors, each only if its stored revision is still the
        one read (or, for a new user, if none was stored meanwhile). Returns the users not
        written because another writer got there first."""
        if not batch:
            return set()
        self.schema.ensure_collection(USERS)
        defer = self.config.background_updates
        vectors, summaries = self._user_vectors([(profile, hit) for profile, hit, _ in batch.values()], defer=defer)
        tokens = {uid: _new_revision() for uid in batch}
        payloads = []
        for summary, (uid, (profile, hit, new_items)) in zip(summaries, batch.items()):
            pending = sorted({*(hit.payload.get(PENDING, []) if hit else []), *new_items})
            payloads.append(pack_user({**profile.model_dump(), **summary, REVISION: tokens[uid], PENDING: pending}))
        uids = list(batch)
        ids = [point_id("user", u) for u in uids]
        # one engine write for the whole batch (all of it or none after a crash): new users are
        # inserted, stored ones replaced only where their revision is still the one read
        only_if = _same_revision([_revision(hit) if hit else "" for _, hit, _ in batch.values()])
        self.forget_cached(uids)
        self.store.upsert(USERS, ids, vectors, payloads, only_if=only_if)
        self.forget_cached(uids)
        stored = self._stored_revisions(uids)
        lost = {uid for uid in uids if stored.get(uid) != tokens[uid]}
        self.write_conflicts += len(lost)
        self._summaries.add([u for u, summary in zip(uids, summaries) if summary[SUMMARY_STALE] and u not in lost])
        return lost

    def _rewrite_users(self, hits: list[Hit], vector_of: Callable[[UserProfile, Hit], np.ndarray]) -> None:
        """Replace stored users' vectors with `vector_of(profile, hit)`, profiles unchanged; a
        user written meanwhile by someone else is re-read and done again."""
        todo = {h.payload["user_id"]: h for h in hits}
        for _ in range(_WRITE_ATTEMPTS):
            if not todo:
                return
            uids = list(todo)
            tokens = {uid: _new_revision() for uid in uids}
            vectors = np.stack([vector_of(UserProfile.model_validate(h.payload), h) for h in todo.values()])
            payloads = [pack_user({**h.payload, REVISION: tokens[uid]}) for uid, h in todo.items()]
            ids = [point_id("user", u) for u in uids]
            self.forget_cached(uids)
            only_if = _same_revision([_revision(h) for h in todo.values()])
            self.store.upsert(USERS, ids, vectors, payloads, only_if=only_if, mode="update_only")
            stored = self._stored_revisions(uids)
            lost = [uid for uid in uids if uid in stored and stored[uid] != tokens[uid]]
            todo = self.read(lost, fresh=True) if lost else {}
        if todo:
            log.warning("%d user vectors changed during the write and keep their previous vector", len(todo))

    def _user_vectors(self, stored: list[tuple[UserProfile, Hit | None]], *, defer: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Each profile's vector (its summary's text vector blended with its history's item
        vectors, and the pooled collaborative part on hybrid stores) and the summary fields to
        store with it. A summary whose text is unchanged is not encoded again; with `defer`, a
        changed one is not encoded now either (the last one stands in, or none) but marked for
        the background encoder."""
        summaries = [p.summary(self.config.profile) for p, _ in stored]
        keys = [_summary_key(self.encoder, text) for text in summaries]
        history = self._history_vectors([p for p, _ in stored])
        vectors: list[np.ndarray | None] = [None] * len(stored)
        fields: list[dict[str, Any]] = []
        encode: list[int] = []
        for n, ((profile, hit), key) in enumerate(zip(stored, keys)):
            payload = hit.payload if hit is not None else {}
            last, last_key = payload.get(SUMMARY_VECTOR) or "", payload.get(SUMMARY_OF) or ""
            if last and last_key == key:
                vectors[n] = _decode(last)
                fields.append({SUMMARY_VECTOR: last, SUMMARY_OF: key, SUMMARY_STALE: []})
            elif defer and (last or _pools(profile, history, self.config)):
                vectors[n] = _decode(last) if last else None
                fields.append({SUMMARY_VECTOR: last, SUMMARY_OF: last_key, SUMMARY_STALE: [key]})
            else:
                encode.append(n)
                fields.append({})
        if encode:
            encoded = self.encoder.encode([summaries[n] for n in encode], batch_size=min(self.config.encode_batch_size, _SUMMARY_BATCH))
            for n, vector in zip(encode, encoded):
                vectors[n] = vector
                fields[n] = {SUMMARY_VECTOR: _encode(vector), SUMMARY_OF: keys[n], SUMMARY_STALE: []}
        blended = [self._blend(profile, vector, history) for (profile, _), vector in zip(stored, vectors)]
        return np.stack(blended), fields

    def _history_vectors(self, profiles: list[UserProfile]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The text and collaborative parts of the items in these profiles' histories."""
        layout = self.schema.layout
        history_ids = list(dict.fromkeys(e.item_id for p in profiles for e in p.history))
        if not history_ids:
            return {}, {}
        if self.store.kind == "edge":  # one process owns the store: the item cache is never stale
            vectors = self.items.vectors(history_ids)
        else:  # another process may have re-fitted the items: read them
            vectors = {h.payload["item_id"]: h.vector for h in self.items.hits(history_ids, with_vectors=True, missing_ok=True)}
        text = {i: layout.text_part(v) for i, v in vectors.items()}
        cf = {i: layout.cf_part(v) for i, v in vectors.items()} if layout.hybrid else {}
        return text, cf

    def _blend(self, profile: UserProfile, summary: np.ndarray | None, history: tuple[dict, dict]) -> np.ndarray:
        layout, config = self.schema.layout, self.config.profile
        text, cf = history
        weights = profile.pooling_weights(config)
        text_vector = user_vector(summary, text, weights, config.text_weight)
        return layout.user(text_vector, pool_vectors(cf, weights) if layout.hybrid else None)

    def _encode_summaries(self, user_ids: list[str]) -> None:
        """Encode the summaries written but not encoded (background summaries) and store them
        with vectors blended from the current history; users written meanwhile are re-read
        (their newer summary, if any, is queued again)."""
        hits = {u: h for u, h in self.read(user_ids, fresh=True).items() if h.payload.get(SUMMARY_STALE)}
        if not hits:
            return
        profiles = {u: UserProfile.model_validate(h.payload) for u, h in hits.items()}
        texts = {u: p.summary(self.config.profile) for u, p in profiles.items()}
        encoded = dict(zip(texts, self.encoder.encode(list(texts.values()), batch_size=min(self.config.encode_batch_size, _SUMMARY_BATCH))))
        keys = {u: _summary_key(self.encoder, t) for u, t in texts.items()}
        again: list[str] = []
        with self._locked_users(list(hits)):
            current = {u: h for u, h in self.read(list(hits), fresh=True).items() if h.payload.get(SUMMARY_STALE)}
            if not current:
                return
            now = {u: UserProfile.model_validate(h.payload) for u, h in current.items()}
            history = self._history_vectors(list(now.values()))
            tokens = {u: _new_revision() for u in current}
            vectors, payloads = [], []
            for u, hit in current.items():
                newer = _summary_key(self.encoder, now[u].summary(self.config.profile))
                vectors.append(self._blend(now[u], encoded[u], history))
                payloads.append(pack_user({
                    **hit.payload, SUMMARY_VECTOR: _encode(encoded[u]), SUMMARY_OF: keys[u],
                    SUMMARY_STALE: [] if newer == keys[u] else [newer], REVISION: tokens[u],
                }))
                if newer != keys[u]:
                    again.append(u)
            uids = list(current)
            self.forget_cached(uids)
            only_if = _same_revision([_revision(h) for h in current.values()])
            self.store.upsert(USERS, [point_id("user", u) for u in uids], np.stack(vectors), payloads, only_if=only_if, mode="update_only")
            self.forget_cached(uids)
            stored = self._stored_revisions(uids)
            again += [u for u in uids if u in stored and stored[u] != tokens[u]]  # another process wrote: again
        if again:
            self._summaries.add(again)

    def _stored_revisions(self, user_ids: list[str]) -> dict[str, str | None]:
        hits = self.store.retrieve(USERS, [point_id("user", u) for u in user_ids], with_payload=["user_id", REVISION])
        return {h.payload["user_id"]: _revision(h) for h in hits}

    def _locked_users(self, user_ids: list[str]) -> _Locks:
        """Hold the in-process locks of these users (taken in a fixed order: no deadlock)."""
        stripes = sorted({hash(u) % _USER_LOCK_STRIPES for u in user_ids})
        return _Locks([self._user_locks[i] for i in stripes])

    def _settle_popularity(self, user_ids: list[str]) -> None:
        """Recount the items these users' last writes newly saw (their pending marks), then
        drop the marks of those not written since they were read (background updates)."""
        hits = [h for h in self.store.retrieve(USERS, [point_id("user", u) for u in user_ids], with_payload=_STATE) if h.payload.get(PENDING)]
        hits = [h for h in hits if not h.payload.get(ERASING)]  # an erasure recounts for itself
        if hits:
            self.items.recount_popularity(sorted({i for h in hits for i in h.payload[PENDING]}))
            self._popularity.add(self._clear_pending_of(hits))  # written meanwhile: their new marks next round

    def _clear_pending(self, profiles: dict[str, UserProfile | None]) -> None:
        """Drop the pending popularity marks of users whose write is now counted (only where no
        writer has written since: its own marks must stay until it recounts)."""
        self._clear_pending_of(self.store.retrieve(USERS, [point_id("user", u) for u in profiles], with_payload=_STATE))

    def _clear_pending_of(self, hits: list[Hit]) -> list[str]:
        """Drop the pending marks of these user points, each only if its revision is still the
        one in the hit; returns the users written meanwhile, whose marks stay. The revision
        changes too, so a writer that read the marks before cannot write them back. The users'
        locks are held, so a writer of this process never finds its revision replaced between
        its write and its check that the write landed."""
        done = [h for h in hits if h.payload.get(PENDING)]
        if not done:
            return []
        only_if = _same_revision([_revision(h) for h in done])
        token = _new_revision()
        users = [h.payload["user_id"] for h in done]
        with self._locked_users(users):
            self.store.set_payload(USERS, [h.id for h in done], {PENDING: [], REVISION: token}, only_if=only_if)
            self.forget_cached(users)
            after = self.store.retrieve(USERS, [h.id for h in done], with_payload=["user_id", REVISION, PENDING])
        return [h.payload["user_id"] for h in after if h.payload.get(PENDING) and _revision(h) != token]

    def _finish_erasure(self, user_ids: list[str], items: list[str]) -> None:
        """Recount the popularity of the user's items (users marked as being erased do not
        count), then delete them: after a crash either the mark is still there (and the open
        finishes the erasure) or the count is already right."""
        pids = {point_id("user", u) for u in user_ids}
        self.items.recount_popularity(items)
        erase = getattr(self.store, "erase", None)
        if erase is not None:
            erase(USERS, sorted(pids))  # every version, and out of the engine's files
        else:
            self.store.delete(USERS, sorted(pids))
        scrub = getattr(self.store, "scrub_changes", None)
        if scrub is not None:
            scrub(lambda entry: not pids & _users_of(entry))
        self.forget_cached(user_ids)

    def _log_change(self, entry: dict[str, Any]) -> None:
        """While a blue-green rebuild runs (or after it switched, until this process refreshes),
        log the user write for the new version, which replays it when opened."""
        target = getattr(self.store, "rebuild_target", None)
        version = target() if target is not None else None
        if version is not None:
            self.store.log_change(version, entry)


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


def _summary_key(encoder: Encoder, text: str) -> str:
    """A short key of a summary text and the model that encodes it."""
    return hashlib.blake2b(f"{encoder.name}\x1f{text}".encode(), digest_size=12).hexdigest()


def _encode(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, np.float32).tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.float32).copy()


def _pools(profile: UserProfile, history: tuple[dict, dict], config: RecommenderConfig) -> bool:
    """Whether the profile's history gives a vector without its summary."""
    return any(item in history[0] for item in profile.pooling_weights(config.profile))


class _BackgroundQueue:
    """Users awaiting a background update (`work(user_ids)`), done in rounds on one thread
    (started on first use). A user queued several times before their round is done once.
    After a round it rests `rest` times as long as the round took, and at least until
    `interval` seconds have passed since the round started."""

    def __init__(
        self, work: Callable[[list[str]], None], thread_name: str, what: str, rest: float = 0.0, interval: float = 0.0
    ) -> None:
        self.work = work
        self.rest = rest
        self.interval = interval
        self.thread_name = thread_name
        self.what = what
        self._waiting: dict[str, None] = {}
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()

    def add(self, user_ids: list[str]) -> None:
        if not user_ids:
            return
        with self._changed:
            if self._closed:
                return  # they stay marked in the store (stale summary, pending marks): finished when it next opens
            self._waiting.update(dict.fromkeys(user_ids))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._busy, timeout)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting or self._closed)
                if self._closed:
                    self._busy = False
                    self._changed.notify_all()
                    return
                batch = list(self._waiting)[:_BACKGROUND_ROUND]
                for uid in batch:
                    del self._waiting[uid]
                self._busy = True
            started = time.perf_counter()
            try:
                self.work(batch)
            except Exception:  # noqa: BLE001 - the users stay marked in the store
                log.exception("%d background %s failed; they are retried when the store next opens", len(batch), self.what)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
            took = time.perf_counter() - started
            pause = max(took * self.rest, self.interval - took)
            if pause > 0:  # give the cores back to requests for a while (more writes coalesce meanwhile)
                with self._changed:
                    self._changed.wait_for(lambda: self._closed, pause)
