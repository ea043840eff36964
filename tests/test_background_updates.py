"""Background updates (`background_updates=True`, what `semrec serve` uses): an event is written
without running the model or recounting popularity, reflected at once, and the summary vector and
the popularity catch up later to exactly what the synchronous path writes; with many writers too;
after kill -9 the store finishes both when it opens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter

import numpy as np
import pytest

from semrec import Recommender
from semrec.store import Filter, open_store
from semrec.store.base import Condition

EVENTS = [
    ("ann", "ki-001"), ("ann", "ki-002"), ("ann", "el-003"),
    ("bob", "el-001"), ("bob", "el-002"),
    ("cat", "ki-004"),
]


def open_pair(tmp_path, encoder, backend):
    """The same catalog twice: synchronous and background summaries."""
    recs = []
    for mode in ("sync", "background"):
        config = {"background_updates": mode == "background"}
        if backend == "edge":
            rec = Recommender.open(tmp_path / mode, encoder=encoder, config=config)
        else:
            rec = Recommender.open(url=":memory:", encoder=encoder, config=config)
        recs.append(rec)
    return recs


def user_vectors(rec: Recommender) -> dict[str, np.ndarray]:
    return {h.payload["user_id"]: np.asarray(h.vector) for h in rec.store.scroll("users", with_vectors=True)}


def stale_users(store) -> int:
    return store.count("users", Filter([Condition("summary_stale", "nonempty")]))


def pending_users(store) -> int:
    return store.count("users", Filter([Condition("pending_items", "nonempty")]))


def popularity(rec: Recommender) -> dict[str, float]:
    return {h.payload["item_id"]: h.payload.get("popularity", 0.0) for h in rec.store.scroll("items")}


def test_background_summaries_end_where_sync_ones_do(tmp_path, encoder, catalog, backend):
    sync, background = open_pair(tmp_path, encoder, backend)
    try:
        for rec in (sync, background):
            rec.index_items(catalog)
            for n, (user, item) in enumerate(EVENTS):
                rec.record(user, item, ts=1_700_000_000 + n)
        assert background.wait_for_background(timeout=60)
        assert stale_users(background.store) == 0 and pending_users(background.store) == 0
        assert popularity(background) == popularity(sync)
        assert popularity(background)["ki-001"] == 1.0 and popularity(background)["el-001"] == 1.0
        expected, got = user_vectors(sync), user_vectors(background)
        assert set(got) == {"ann", "bob", "cat"}
        for user in expected:
            np.testing.assert_allclose(got[user], expected[user], atol=1e-5, err_msg=user)
            assert background.profile(user) == sync.profile(user)
        assert [r.item_id for r in background.recommend("ann", k=5)] == [r.item_id for r in sync.recommend("ann", k=5)]
    finally:
        sync.close()
        background.close()


def test_an_event_is_written_and_reflected_without_running_the_model(tmp_path, encoder, catalog, backend):
    _, rec = open_pair(tmp_path, encoder, backend)
    try:
        rec.index_items(catalog)
        rec.profiles.close()  # no background round: what the write path alone leaves
        encoder.encoded = 0
        for n, item in enumerate(["ki-001", "ki-002", "ki-003"]):
            rec.record("kim", item, ts=1_700_000_000 + n)
        assert encoder.encoded == 0  # three events written, no summary encoded
        assert stale_users(rec.store) == 1 and pending_users(rec.store) == 1
        assert popularity(rec)["ki-001"] == 0.0  # not recounted yet either
        top = rec.recommend("kim", k=5)
        assert not {"ki-001", "ki-002", "ki-003"} & {r.item_id for r in top}  # seen ones excluded
        assert all(r.category == "Kitchen > Cookware" for r in top[:3])  # three pans viewed: cookware first
        assert rec.profile("kim").seen == ["ki-001", "ki-002", "ki-003"]
    finally:
        rec.close()


def test_an_unchanged_summary_is_not_encoded_again(tmp_path, encoder, catalog):
    rec = Recommender.open(tmp_path / "store", encoder=encoder)
    try:
        rec.index_items(catalog)
        rec.record("kim", "ki-001", ts=1_700_000_000)
        encoder.encoded = 0
        rec.set_interests("kim", ["cooking"])  # the summary changes: encoded once
        assert encoder.encoded == 1
        profile = rec.record("kim", "ki-001", ts=1_700_000_050)  # viewed again: written, same summary
        assert profile.events == 2 and encoder.encoded == 1
    finally:
        rec.close()


CHILD = textwrap.dedent("""
    import sys, time
    from semrec import Recommender, load_encoder
    rec = Recommender.open(sys.argv[1], encoder=load_encoder(backend="torch"), config={"background_updates": True})
    rec.profiles.close()  # killed before any background round: every summary and recount left
    for n, (user, item) in enumerate(%r):
        rec.record(user, item, ts=1_700_000_000 + n)
    print("acked", flush=True)
    time.sleep(600)
""" % (EVENTS,))


def test_updates_left_by_a_killed_writer_are_finished_when_the_store_opens(tmp_path, encoder, catalog):
    reference = Recommender.open(tmp_path / "reference", encoder=encoder)
    reference.index_items(catalog)
    for n, (user, item) in enumerate(EVENTS):
        reference.record(user, item, ts=1_700_000_000 + n)
    expected, expected_popularity = user_vectors(reference), popularity(reference)
    reference.close()

    with Recommender.open(tmp_path / "store", encoder=encoder) as rec:
        rec.index_items(catalog)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "store")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "acked"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    store = open_store(tmp_path / "store")
    assert stale_users(store) == 3 and pending_users(store) == 3  # acknowledged, never encoded or recounted
    store.close()

    with Recommender.open(tmp_path / "store", encoder=encoder) as rec:  # a synchronous reader
        assert rec.wait_for_background(timeout=60)
        assert stale_users(rec.store) == 0 and pending_users(rec.store) == 0
        got = user_vectors(rec)
        for user in expected:
            np.testing.assert_allclose(got[user], expected[user], atol=1e-5, err_msg=user)
        assert popularity(rec) == expected_popularity


def test_many_writers_in_background_mode_lose_no_event_and_count_every_view(tmp_path, encoder, catalog, backend):
    """8 threads x 25 events for 10 overlapping users: every event stored, and once the
    background settles, each item's popularity is the number of users who saw it."""
    _, rec = open_pair(tmp_path, encoder, backend)
    try:
        rec.index_items(catalog)
        items = list(catalog.item_id[:40])
        sent: dict[str, set] = {f"u{n}": set() for n in range(10)}
        lock = threading.Lock()

        def writer(w: int) -> None:
            for n in range(25):
                user, item = f"u{(w + n) % 10}", items[(w * 7 + n * 3) % len(items)]
                rec.record(user, item, ts=1_700_000_000 + w * 100 + n)
                with lock:
                    sent[user].add(item)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert rec.wait_for_background(timeout=120)
        assert {u: set(rec.profile(u).seen) for u in sent} == sent
        seen_by = Counter(item for items_seen in sent.values() for item in items_seen)
        counted = popularity(rec)
        assert {i: counted[i] for i in items} == {i: float(seen_by[i]) for i in items}
        assert pending_users(rec.store) == 0 and stale_users(rec.store) == 0
        rec.forget_user("u0")  # an erasure recounts for itself, background or not
        assert rec.wait_for_background(timeout=60)
        after = popularity(rec)
        assert {i: after[i] for i in items} == {i: float(seen_by[i] - (i in sent["u0"])) for i in items}
    finally:
        rec.close()


@pytest.mark.parametrize("mode", ["sync", "background"])
def test_the_service_reflects_an_event_in_the_next_recommendation(tmp_path, encoder, catalog, mode):
    from fastapi.testclient import TestClient

    from semrec.service import create_app

    rec = Recommender.open(tmp_path / "store", encoder=encoder, config={"background_updates": mode == "background"})
    rec.index_items(catalog)
    try:
        with TestClient(create_app(recommender=rec)) as client:
            answer = client.post("/events", json={"user_id": "kim", "item_id": "ki-001", "ts": 1_700_000_000}).json()
            assert answer["recorded"] == 1
            top = client.get("/users/kim/recommendations", params={"k": 5}).json()["results"]
            assert "ki-001" not in {r["item_id"] for r in top}
            # ki-001 is a cast-iron skillet: cookware leads (8 of the 256 items), and the rest of the
            # top 5 is about cooking (kitchen items or a cookbook)
            assert [r["category"] for r in top[:2]] == ["Kitchen > Cookware"] * 2
            assert all(r["category"].startswith("Kitchen") or r["category"] == "Books > Cooking" for r in top)
            assert set(client.get("/users/kim").json()) >= {"seen", "history"}
            assert "summary_vector" not in client.get("/users/kim").json()
    finally:
        rec.close()


def test_background_rounds_coalesce_users_and_keep_their_interval():
    """Users queued while a round runs or rests are done together in the next round; rounds
    start at least `interval` apart (popularity rounds cost about the same for one user as for
    hundreds)."""
    import time

    from semrec.users import _BackgroundQueue

    rounds: list[tuple[float, list[str]]] = []
    queue = _BackgroundQueue(lambda users: rounds.append((time.monotonic(), users)), "test-queue", "test work", interval=0.05)
    try:
        for n in range(40):
            queue.add([f"u{n % 10}"])
            time.sleep(0.005)
        assert queue.wait(timeout=30)
    finally:
        queue.close()
    done = [u for _, users in rounds for u in users]
    assert set(done) == {f"u{n}" for n in range(10)}
    assert len(rounds) < 40  # coalesced
    starts = [t for t, _ in rounds]
    assert all(later - earlier >= 0.05 - 1e-3 for earlier, later in zip(starts, starts[1:]))
