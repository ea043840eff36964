"""The write path under concurrency: threads sharing one Recommender, and several Recommenders
(as several processes would be) sharing one Qdrant store through compare-and-swap. Known
answers: every acknowledged event is stored exactly once, popularity equals the number of
users who have seen each item, and nothing raises."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from qdrant_client import QdrantClient

from semrec import Recommender
from semrec.profiles import event_key, make_event
from semrec.schema import REVISION, USERS


def check_consistent(rec: Recommender, sent: dict[str, set[tuple[str, float]]]) -> None:
    """Every sent (item, ts) is in its user's profile once; popularity = users who saw the item."""
    for uid, events in sent.items():
        profile = rec.profile(uid)
        assert profile is not None, uid
        keys = [event_key(i, "view", ts) for i, ts in events]
        assert set(keys) <= set(profile.event_keys), f"{uid}: events lost"
        assert len(profile.event_keys) == len(set(profile.event_keys)) == profile.events
        assert set(profile.seen) == {i for i, _ in events}
        assert len(profile.seen) == len(set(profile.seen))
    seen = Counter(i for uid in rec.user_ids() for i in rec.profile(uid).seen)
    for hit in rec.store.scroll("items"):
        assert hit.payload.get("popularity", 0.0) == seen.get(hit.payload["item_id"], 0), hit.payload["item_id"]
    for hit in rec.store.scroll("users", with_vectors=True):
        assert np.linalg.norm(hit.vector) > 0.5


def run_threads(target, n: int) -> list[str]:
    errors: list[str] = []

    def guarded(worker: int) -> None:
        try:
            target(worker)
        except BaseException as exc:  # a Rust panic is a BaseException: count it too
            errors.append(repr(exc))

    threads = [threading.Thread(target=guarded, args=(w,)) for w in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_eight_threads_record_and_recommend_lose_nothing(shop, catalog):
    """4 writers on overlapping users and 4 readers, on one Recommender (issue: 106 of 298
    events were lost and raw WAL errors surfaced)."""
    items = list(catalog.item_id)
    sent: dict[str, set] = defaultdict(set)
    lock = threading.Lock()
    served = Counter()

    def worker(w: int) -> None:
        rnd = random.Random(w)
        for n in range(25):
            uid = f"u{rnd.randrange(5)}"
            if w % 2:
                shop.recommend(uid, k=5)
                served[w] += 1
                continue
            item, ts = rnd.choice(items), 1_700_000_000 + w * 1000 + n
            shop.record(uid, item, ts=ts)
            with lock:
                sent[uid].add((item, float(ts)))

    errors = run_threads(worker, 8)
    assert errors == []
    assert sum(len(v) for v in sent.values()) == 100 and sum(served.values()) == 100
    check_consistent(shop, sent)


def test_compare_and_swap_between_writers(encoder, catalog):
    """Four Recommenders on one Qdrant store (each with its own locks and caches, like four
    processes) record events for the same two users at once: none is lost, and conflicts were
    detected and retried (the revision check did its job)."""
    client = QdrantClient(location=":memory:")
    base = Recommender.open(url=":memory:", client=client, encoder=encoder)
    base.index_items(catalog)
    writers = [Recommender.open(url=":memory:", client=client, encoder=encoder) for _ in range(4)]
    items = list(catalog.item_id)
    sent: dict[str, set] = defaultdict(set)
    lock = threading.Lock()

    def worker(w: int) -> None:
        rnd = random.Random(w)
        for n in range(25):
            uid, item, ts = f"u{rnd.randrange(2)}", rnd.choice(items), 1_700_000_000 + w * 1000 + n
            writers[w].record(uid, item, ts=ts)
            with lock:
                sent[uid].add((item, float(ts)))

    assert run_threads(worker, 4) == []
    check_consistent(base, sent)


class MeddlingEncoder:
    """The real encoder; on its first call it lets another writer record an event first, so
    that the write in progress finds its user changed (a lost update without compare-and-swap)."""

    def __init__(self, inner, meddle):
        self.inner, self.meddle = inner, meddle
        self.name, self.dim, self.backend, self.fingerprint = inner.name, inner.dim, inner.backend, inner.fingerprint

    def encode(self, texts, **kw):
        meddle, self.meddle = self.meddle, None
        if meddle is not None:
            meddle()
        return self.inner.encode(texts, **kw)

    def encode_query(self, text):
        return self.inner.encode_query(text)


def test_a_write_that_lost_the_race_is_reapplied(encoder, catalog, backend, tmp_path):
    """Writer A reads u1's profile, writer B records for u1, then A writes: A's stale write must
    be refused by the store and re-applied on B's profile; both events survive."""
    if backend == "edge":
        other = Recommender.open(tmp_path / "s", encoder=encoder)
        other.index_items(catalog)
        other.record("u1", "el-001", ts=1)
        shared = other.store  # one process: two facades on the same store object

        def facade(enc):
            return Recommender(shared, enc)
    else:
        client = QdrantClient(location=":memory:")
        other = Recommender.open(url=":memory:", client=client, encoder=encoder)
        other.index_items(catalog)
        other.record("u1", "el-001", ts=1)

        def facade(enc):
            return Recommender.open(url=":memory:", client=client, encoder=enc)

    a = facade(MeddlingEncoder(encoder, lambda: other.record("u1", "ki-001", ts=2)))
    a.record("u1", "ga-001", ts=3)
    assert a.write_conflicts == 1
    profile = other.profile("u1")
    assert set(profile.seen) == {"el-001", "ki-001", "ga-001"} and profile.events == 3
    check_consistent(other, {"u1": {("el-001", 1.0), ("ki-001", 2.0), ("ga-001", 3.0)}})


def test_record_many_twice_is_idempotent_over_the_whole_history(shop, catalog):
    """The same 3,000-event batch sent twice stores 3,000 events (the issue stored 4,500:
    duplicates were only looked for in the last 50 history entries)."""
    rnd = random.Random(0)
    items = list(catalog.item_id)
    rows = [{"user_id": f"u{n % 20}", "item_id": rnd.choice(items), "ts": 1_700_000_000 + n} for n in range(3000)]
    frame = pd.DataFrame(rows)
    first = shop.record_many(frame)
    again = shop.record_many(frame.sample(frac=1, random_state=1))
    assert (first.events, first.duplicates) == (3000, 0)
    assert (again.events, again.duplicates) == (0, 3000)
    assert sum(shop.profile(f"u{u}").events for u in range(20)) == 3000
    sent = defaultdict(set)
    for row in rows:
        sent[row["user_id"]].add((row["item_id"], float(row["ts"])))
    check_consistent(shop, sent)


def test_forget_user_recounts_popularity(shop):
    shop.record("a", "el-001", ts=1)
    shop.record("b", "el-001", ts=2)
    assert shop.item("el-001")["popularity"] == 2
    assert shop.forget_user("a") is True
    assert shop.profile("a") is None and shop.forget_user("a") is False
    assert shop.item("el-001")["popularity"] == 1
    assert "a" not in shop.user_ids()


class RevisionReplacingStore:
    """The real store, except that right after the first write of user points it replaces their
    revision, as another process (its popularity clear or summary encoder) can between a
    writer's write and its check that the write landed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.replaced = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def upsert(self, name, ids, *args, **kwargs):
        self.inner.upsert(name, ids, *args, **kwargs)
        if name == USERS and not self.replaced:
            self.replaced = True
            self.inner.set_payload(USERS, list(ids), {REVISION: "another-writer"})


def test_a_write_reported_lost_that_landed_is_still_recorded(encoder, catalog, tmp_path):
    """The writer finds another revision than its own and retries: the retry finds its events
    stored, and reports them "recorded" (not "duplicate"), each stored once."""
    with Recommender.open(tmp_path / "s", encoder=encoder) as owner:
        owner.index_items(catalog)
        owner.record("u1", "el-001", ts=1)
        rec = Recommender(RevisionReplacingStore(owner.store), encoder)
        report = rec.record_events([make_event("u1", "ki-001", "view", 2, 1.0), make_event("u1", "ga-001", "view", 3, 1.0)])
        assert rec.store.replaced and rec.write_conflicts == 1
        assert report.outcomes == ["recorded", "recorded"]
        profile = rec.profile("u1")
        assert profile.seen == ["el-001", "ki-001", "ga-001"] and profile.events == 3
        assert rec.record_events([make_event("u1", "ki-001", "view", 2, 1.0)]).outcomes == ["duplicate"]
