"""Known-answer tests of the Recommender on the shipped sample catalog, on both store backends."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from semrec import (
    ConfigError,
    ModelMismatchError,
    NotIndexedError,
    Recommender,
    StoreLockedError,
    UnknownUserError,
)

ELECTRONICS_USER = [("el-001", "view"), ("el-008", "view"), ("el-013", "view")]  # phone, tablet, earphones
KITCHEN_BURST = ["ki-001", "ki-014", "ki-032", "ki-012", "ki-003"]


def _top(results):
    return [r.category.split(" > ")[0] for r in results]


def test_electronics_user_gets_electronics_not_garden_tools(shop):
    for item_id, kind in ELECTRONICS_USER:
        shop.record("alice", item_id, kind=kind)
    shop.set_interests("alice", ["electronics", "smart devices"])
    results = shop.recommend("alice", k=10)
    assert _top(results)[:5] == ["Electronics"] * 5
    assert "Garden" not in _top(results)
    assert all(r.reason for r in results)  # every result says why


def test_kitchen_burst_moves_the_next_call_to_kitchen(shop):
    for item_id, kind in ELECTRONICS_USER:
        shop.record("bob", item_id, kind=kind)
    before = _top(shop.recommend("bob", k=5))
    assert before.count("Kitchen") == 0
    for item_id in KITCHEN_BURST:
        shop.record("bob", item_id, kind="view")
    after = _top(shop.recommend("bob", k=5))
    assert after[0] == "Kitchen" and after.count("Kitchen") >= 4


def test_exclude_seen_and_include_seen(shop):
    seen = ["el-001", "el-002", "el-003", "el-004"]
    for item_id in seen:
        shop.record("carol", item_id)
    assert not set(seen) & set(shop.recommend("carol", k=20).item_ids)
    assert set(seen) & set(shop.recommend("carol", k=20, exclude_seen=False).item_ids)


def test_filters_hold(shop):
    for item_id, kind in ELECTRONICS_USER:
        shop.record("dan", item_id, kind=kind)
    kitchen = shop.recommend("dan", k=10, filter={"category": "Kitchen"})
    assert len(kitchen) == 10 and set(_top(kitchen)) == {"Kitchen"}
    cheap = shop.recommend("dan", k=10, filter={"price": {"lt": 50}, "in_stock": True})
    assert cheap and all(r.payload["price"] < 50 and r.payload["in_stock"] for r in cheap)
    tagged = shop.search("charger", k=5, filter={"tags": ["usb-c"]})
    assert tagged and all("usb-c" in r.tags for r in tagged)
    with pytest.raises(ConfigError, match=r"Cannot filter on 'colour'.*Filterable fields: brand, category"):
        shop.recommend("dan", filter={"colour": "red"})


def test_search_and_similar(shop):
    assert shop.search("wireless noise-cancelling earbuds", k=3)[0].category == "Electronics > Audio"
    similar = shop.similar("ga-001", k=5)
    assert "ga-001" not in similar.item_ids and set(_top(similar)) == {"Garden"}
    with pytest.raises(NotIndexedError, match=r"Item 'nope' is not in the catalog"):
        shop.similar("nope")
    with pytest.raises(ConfigError, match="search text '  ' is empty"):
        shop.search("  ")


def test_unknown_user_policies(shop, open_rec):
    shop.record_many(pd.DataFrame({"user_id": ["x", "y", "z"], "item_id": ["pe-001", "pe-001", "ki-001"]}))
    popular = shop.recommend("stranger", k=2)
    assert popular.item_ids == ["pe-001", "ki-001"] and popular[0].reason == "popular"
    strict = Recommender(shop.store, shop.encoder, {"unknown_user": "raise"} and None)
    strict.config.unknown_user = "raise"
    with pytest.raises(UnknownUserError, match="User 'stranger' has no recorded events"):
        strict.recommend("stranger")
    shop.set_interests("newbie", "herbal tea")
    assert shop.recommend("newbie", k=3)[0].category == "Grocery > Tea & Coffee"


def test_k_is_validated_and_capped(shop):
    shop.record("erin", "el-001")
    assert len(shop.recommend("erin", k=10_00)) == shop.n_items - 1
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(ConfigError, match=r"k=.* is not valid; expected an integer >= 1"):
            shop.recommend("erin", k=bad)
    with pytest.raises(ConfigError, match="larger than max_k=1000"):
        shop.recommend("erin", k=1001)


def test_record_of_unknown_item_changes_nothing(shop):
    shop.record("fay", "el-001")
    with pytest.raises(NotIndexedError, match=r"item id\(s\) not in the catalog, e.g. \['no-such-item'\]; nothing was recorded"):
        shop.record("fay", "no-such-item")
    with pytest.raises(NotIndexedError, match="nothing was recorded"):
        shop.record_many(pd.DataFrame({"user_id": ["fay", "fay"], "item_id": ["el-002", "missing"]}))
    assert shop.profile("fay").seen == ["el-001"]
    report = shop.record_many(pd.DataFrame({"user_id": ["fay", "fay"], "item_id": ["el-002", "missing"]}), on_unknown_item="skip")
    assert (report.events, report.skipped_unknown_items) == (1, 1)


def test_bad_event_values_are_clear(shop):
    with pytest.raises(ConfigError, match=r"weight -1.0 is not valid; expected a finite number >= 0"):
        shop.record("g", "el-001", weight=-1)
    with pytest.raises(ConfigError, match=r"ts 'yesterday' is not a time"):
        shop.record("g", "el-001", ts="yesterday")
    with pytest.raises(ConfigError, match=r"user_id None is not valid"):
        shop.record(None, "el-001")


def test_record_many_matches_record_one_by_one(shop, events):
    user_events = events[events.user_id == "u002"]
    shop.record_many(user_events)
    for row in user_events.itertuples():
        shop.record("u002-copy", row.item_id, kind=row.kind, ts=row.ts)
    a, b = shop.profile("u002"), shop.profile("u002-copy")
    assert a.summary(shop.config.profile) == b.summary(shop.config.profile)
    assert shop.recommend("u002", k=5).item_ids == shop.recommend("u002-copy", k=5).item_ids


def test_duplicate_events_are_ignored(shop):
    shop.record("hal", "el-001", ts=100)
    report = shop.record_many(pd.DataFrame({"user_id": ["hal"], "item_id": ["el-001"], "ts": [100]}))
    assert report.duplicates == 1 and shop.profile("hal").events == 1


def test_forget_user_removes_every_trace(shop):
    shop.record("ivy", "pe-002")
    assert shop.item("pe-002")["popularity"] == 1
    assert shop.recommend("ivy", k=1)[0].reason != "popular"  # served (and kept in memory on Edge)
    assert shop.forget_user("ivy") is True
    assert shop.profile("ivy") is None and shop.item("pe-002")["popularity"] == 0
    assert shop.recommend("ivy", k=1)[0].reason == "popular"
    assert shop.forget_user("ivy") is False


def test_profiles_and_index_persist_across_reopen_without_reencoding(tmp_path, encoder, catalog):
    with Recommender.open(tmp_path / "s", encoder=encoder) as rec:
        rec.index_items(catalog)
        rec.record("joe", "ga-003")
        expected = rec.recommend("joe", k=5).item_ids
    encoder.encoded = 0
    with Recommender.open(tmp_path / "s", encoder=encoder) as rec:
        assert rec.recommend("joe", k=5).item_ids == expected
        assert rec.profile("joe").seen == ["ga-003"]
        assert encoder.encoded == 0


def test_model_mismatch_is_refused(tmp_path, encoder, catalog, real_encoder):
    with Recommender.open(tmp_path / "s", encoder=encoder) as rec:
        rec.index_items(catalog.head(5))
    other = tmp_path / "other-model"
    model = real_encoder.model
    model.save(str(other))
    from sentence_transformers import SentenceTransformer

    changed = SentenceTransformer(str(other))
    with __import__("torch").no_grad():
        next(changed.parameters()).add_(0.01)
    changed.save(str(other))
    with pytest.raises(ModelMismatchError, match=r"encoded with sentence-transformers/all-MiniLM-L6-v2 .*Open the store with model="):
        Recommender.open(tmp_path / "s", model=str(other))
    with Recommender.open(tmp_path / "s", encoder=encoder) as rec:  # the failed open released the folder
        assert rec.n_items == 5


def test_store_folder_opened_by_another_process(tmp_path, encoder):
    folder = tmp_path / "s"
    Recommender.open(folder, encoder=encoder).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from semrec.store import EdgeStore
            s = EdgeStore({str(folder)!r}); print("ready", flush=True); sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=r"already open \(held by pid \d+\).*Qdrant server"):
            Recommender.open(folder, encoder=encoder)
    finally:
        holder.communicate("", timeout=30)


def test_bad_catalog_rows_index_the_good_ones_and_write_rejects(open_rec, tmp_path):
    rec = open_rec("edge")
    frame = pd.DataFrame({"item_id": ["a", "b", "a"], "name": ["Kettle", "", "Dup"]})
    report = rec.index_items(frame, rejects_path=tmp_path / "rejects.jsonl")
    assert report.indexed == 1 and len(report.rejected) == 2
    assert len(report.rejects_path.read_text().splitlines()) == 2
    assert rec.n_items == 1


def test_backends_give_the_same_rankings(open_rec, catalog, events):
    """Congruence: the same queries, exact search, same ranking on Edge and qdrant-client."""
    recs = [open_rec("edge"), open_rec("qdrant")]
    for rec in recs:
        rec.index_items(catalog)
        rec.record_many(events)
    def answers(rec):
        out = [rec.recommend(u, k=10).item_ids for u in ("u001", "u002", "u003", "u019")]
        out.append(rec.recommend("u001", k=10, filter={"category": "Kitchen"}).item_ids)
        out.append(rec.search("tea gift", k=10).item_ids)
        out.append(rec.similar("ki-001", k=10).item_ids)
        out.append([r.score for r in rec.popular(5)])  # ties in popularity may order differently
        return out
    edge, qdrant = answers(recs[0]), answers(recs[1])
    assert edge == qdrant
    scores = [r.score for r in recs[0].recommend("u001", k=10)], [r.score for r in recs[1].recommend("u001", k=10)]
    np.testing.assert_allclose(*scores, atol=1e-5)


def test_reasons_use_the_current_vectors_of_history_items(shop):
    """History vectors for the reasons are cached in memory; a re-indexed item replaces its entry."""
    shop.record("cache-user", "el-001")
    shop.recommend("cache-user", k=3)
    old = shop.items.vectors(["el-001"])["el-001"].copy()
    renamed = shop.store.retrieve("items", [shop.items.hits(["el-001"])[0].id])[0].payload
    shop.index_items(pd.DataFrame([{"item_id": "el-001", "name": "Cast iron skillet", "category": renamed["category"]}]))
    new = shop.items.vectors(["el-001"])["el-001"]
    stored = shop.items.hits(["el-001"], with_vectors=True)[0].vector[: shop.layout.user_dim]
    np.testing.assert_array_equal(new, stored)
    assert float(new[: shop.layout.text] @ old[: shop.layout.text]) < 0.9


def test_each_reason_names_the_closest_history_item_with_a_cold_or_warm_cache(shop):
    """"like X" names the history item whose stored vector is closest to the recommended item's;
    the item-vector cache (history items and hits) changes nothing but speed."""
    shop.record("rhea", "el-001")  # a phone
    shop.record("rhea", "ki-001")  # a kitchen item
    shop.items.forget_cached()  # a cold in-process cache, as in a new process
    cold = shop.recommend("rhea", k=8)
    warm = shop.recommend("rhea", k=8)
    assert [(r.item_id, r.reason) for r in cold] == [(r.item_id, r.reason) for r in warm]
    width = shop.layout.user_dim
    history = {h.payload["item_id"]: h.vector[:width] for h in shop.items.hits(["el-001", "ki-001"], with_vectors=True)}
    names = {h.payload["item_id"]: h.payload["name"] for h in shop.items.hits(["el-001", "ki-001"])}
    for hit, rec in zip(shop.items.hits(cold.item_ids, with_vectors=True), cold):
        closest = max(history, key=lambda i: float(hit.vector[:width] @ history[i]))
        assert rec.reason.startswith(f"like {names[closest]}"), (rec.item_id, rec.reason)
    assert {r.reason.split(";")[0] for r in cold} == {f"like {n}" for n in names.values()}


def test_a_long_seen_list_still_gets_k_results_from_hnsw(tmp_path, encoder, monkeypatch):
    """Above the exact-search size the store walks HNSW, and the walk under a strict filter
    (thousands of seen items excluded) gives k results. When a walk comes back short (the
    filtered graph falls apart; simulated here by cutting the engine's answer to a walk), the
    store scans exactly: the scan is seen to run, and without it the answer would be short."""
    import semrec.store.edge as edge
    from semrec.catalog import Item
    from semrec.store.base import EXACT_SEARCH_MAX_CELLS

    rng = np.random.default_rng(0)
    n = 9_000
    rec = Recommender.open(tmp_path / "big", encoder=encoder)
    assert n * rec.layout.item_dim > EXACT_SEARCH_MAX_CELLS  # HNSW, not exact
    items = [Item(f"i{j}", f"item {j}", "Things", []) for j in range(n)]
    for item in items:
        item.text = item.name
    vectors = rng.standard_normal((n, encoder.dim)).astype(np.float32)
    rec.upsert_items(items, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    rec.finish_indexing()
    seen = [f"i{j}" for j in range(0, n, 2)]  # half the catalogue
    rec.record_many(pd.DataFrame({"user_id": "heavy", "item_id": seen, "ts": range(len(seen))}))

    searches: list[tuple[bool, int]] = []  # (exact, hits) of each search of the items shard
    short_walks = False

    class WatchedShard:
        def __init__(self, shard):
            self.shard = shard

        def __getattr__(self, name):
            return getattr(self.shard, name)

        def query(self, request):
            points = self.shard.query(request)
            if short_walks and not request.params.exact:
                points = points[:3]
            searches.append((request.params.exact, len(points)))
            return points

    real_shard = edge.EdgeStore._shard
    monkeypatch.setattr(edge.EdgeStore, "_shard", lambda store, name: WatchedShard(real_shard(store, name)))
    for k in (10, 100):
        searches.clear()
        results = rec.recommend("heavy", k=k, explain_results=False)
        assert len(results) == k and not set(results.item_ids) & set(seen)
        assert searches == [(False, k)]  # one HNSW walk, k results: no scan needed

    short_walks = True
    for k in (10, 100):
        searches.clear()
        results = rec.recommend("heavy", k=k, explain_results=False)
        assert len(results) == k and not set(results.item_ids) & set(seen)
        assert searches == [(False, 3), (True, k)]  # the walk came back short; the scan filled it
    monkeypatch.setattr(edge, "query_filled", lambda search, exact, k, filter: search(exact))
    assert len(rec.recommend("heavy", k=10, explain_results=False)) == 3  # short without the scan
    rec.close()
