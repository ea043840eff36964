"""Negative feedback, with known answers: ten near-duplicate phones among other electronics; a
dislike of one phone removes it and its near-duplicates from the user's next top 10 (on both
store backends); per-call negatives do the same for `recommend` and `similar`."""

from __future__ import annotations

import pandas as pd
import pytest

from semrec import NotIndexedError

PHONES = [f"ph-{n}" for n in range(10)]


@pytest.fixture
def electronics(open_rec, backend):
    rows = [
        {"item_id": f"ph-{n}", "name": f"Zephyr Z{10 + n} Smartphone, 6.1-inch OLED, {[64, 128, 256][n % 3]} GB",
         "category": "Electronics > Phones", "tags": "smartphone|oled"}
        for n in range(10)
    ]
    others = ["Zephyr Tab 11 Tablet, 11-inch LCD", "Zephyr Watch 3 Smartwatch", "Zephyr Buds Pro Wireless Earbuds",
              "Nimbus 14 Laptop, 16 GB RAM", "Aurel Mirrorless Camera 24 MP", "Boomr Bluetooth Speaker",
              "Vanta E-reader 7-inch", "Zephyr Charger 30 W USB-C", "Gamer Console X", "Orbit Smart Home Hub",
              "Pixelon 4K Monitor 27-inch", "Nimbus Mechanical Keyboard", "Zephyr Phone Case", "Aurel Tripod"]
    rows += [{"item_id": f"el-{n}", "name": name, "category": "Electronics", "tags": "gadget"} for n, name in enumerate(others)]
    rec = open_rec(backend)
    rec.index_items(pd.DataFrame(rows))
    return rec


def test_a_dislike_removes_the_item_and_its_near_duplicates(electronics):
    rec = electronics
    rec.record("u", "el-0", ts=1)  # a tablet: phones rank high for this user
    rec.record("u", "el-1", ts=2)
    before = rec.recommend("u", k=10).item_ids
    assert len(set(before) & set(PHONES)) >= 5
    rec.record("u", "ph-3", kind="dislike", ts=3)
    after = rec.recommend("u", k=10).item_ids
    assert len(after) == 10 and not set(after) & set(PHONES)
    profile = rec.profile("u")
    assert set(profile.negatives) == set(PHONES) and "ph-3" not in profile.seen  # a dislike is not a view
    assert rec.item("ph-3")["popularity"] == 0
    # changing one's mind: a later positive event on the item lifts its exclusion
    rec.record("u", "ph-3", kind="purchase", ts=4)
    assert "ph-3" not in rec.profile("u").negatives


def test_per_call_negatives_for_recommend_and_similar(electronics):
    rec = electronics
    rec.record("v", "el-0", ts=1)
    top = rec.recommend("v", k=5).item_ids
    pushed = rec.recommend("v", k=5, negatives=[top[0]]).item_ids
    assert top[0] not in pushed
    similar = rec.similar("el-2", k=5).item_ids  # earbuds: other Zephyr items first
    assert similar[0] not in rec.similar("el-2", k=5, negatives=[similar[0]]).item_ids
    with pytest.raises(NotIndexedError, match="'nope' is not in the catalog"):
        rec.recommend("v", negatives=["nope"])
    # negatives push neighbours down: the disliked phone's twins fall in the ranking
    ranked = rec.recommend("v", k=24).item_ids
    pushed = rec.recommend("v", k=23, negatives=["ph-0"]).item_ids
    assert sum(pushed.index(p) for p in PHONES[1:]) > sum(ranked.index(p) for p in PHONES[1:])


def test_a_user_with_only_dislikes_gets_popular_items_without_them(electronics):
    rec = electronics
    rec.record("w", "el-5", ts=1)
    rec.record("x", "el-5", ts=1)
    rec.record("z", "el-5", kind="not_interested", ts=2)
    results = rec.recommend("z", k=3)
    assert "el-5" not in results.item_ids and all(r.reason == "popular" for r in results)
