"""Reasons everywhere, and results that keep their shape: search, similar and interest-only users
get reasons; slices of results still render; frames carry catalog fields, never internal keys;
the popular fallback says its score is a popularity."""

from __future__ import annotations

from semrec import Results

INTERNAL = {"text", "category_levels", "popularity", "cf_interactions"}


def test_search_and_similar_give_reasons(shop):
    found = shop.search("wireless earbuds", k=3)
    assert len(found) == 3 and all(r.reason.startswith("matches 'wireless earbuds'") for r in found)
    anchor = shop.item("el-001")
    similar = shop.similar("el-001", k=3)
    assert len(similar) == 3 and all(f"like {anchor['name']}" in r.reason for r in similar)


def test_interest_only_users_get_reasons(shop):
    shop.set_interests("ivy", ["gardening", "outdoor tools"])
    results = shop.recommend("ivy", k=3)
    assert len(results) == 3 and all(r.reason.startswith("for your interests: gardening, outdoor tools") for r in results)


def test_slices_and_frames(shop):
    shop.record("fr", "el-001", ts=1)
    results = shop.recommend("fr", k=5)
    head = results[:2]
    assert isinstance(head, Results) and len(head.to_frame()) == 2
    frame = results.to_frame()
    assert {"price", "brand", "in_stock"} <= set(frame.columns)
    assert not INTERNAL & set(frame.columns)
    assert set(frame.score_kind) == {"similarity"}


def test_popular_fallback_is_flagged(shop):
    shop.record("a", "el-001", ts=1)
    shop.record("b", "el-001", ts=2)
    results = shop.recommend("stranger", k=3)
    assert results[0].item_id == "el-001" and results[0].score == 2.0
    assert all(r.score_kind == "popularity" and r.reason == "popular" for r in results)
