"""Business rules inside the engine, with known answers on both store backends: boosts change
scores exactly as the formula says, a recency decay favours new items, pinned items come first,
hidden ones never appear, k results come back under a filter that keeps 5% of the items, and
date fields filter as dates."""

from __future__ import annotations

import pandas as pd
import pytest

from semrec import ConfigError


@pytest.fixture
def shop_rules(open_rec, backend):
    rows = []
    for n in range(200):
        rows.append({
            "item_id": f"it-{n:03d}",
            "name": f"Trail running shoe model {n}" if n % 2 else f"Ceramic tea cup set {n}",
            "category": "Shoes" if n % 2 else "Kitchen",
            "margin": round((n % 7) / 10, 1),
            "in_stock": n % 3 != 0,
            "released": f"2026-{1 + n % 12:02d}-15",
            "rare": n % 20 == 0,  # 10 of 200 items: a 5% filter
        })
    rec = open_rec(backend)
    rec.index_items(pd.DataFrame(rows))
    rec.record("u", "it-001", ts=1)  # a shoe
    return rec


def test_boost_adds_weight_times_field_to_the_score(shop_rules):
    rec = shop_rules
    base = {r.item_id: r.score for r in rec.recommend("u", k=150)}
    boosted = rec.recommend("u", k=20, rules={"boost": {"margin": 0.5, "in_stock": 0.2}})
    for r in boosted:
        expected = base[r.item_id] + 0.5 * r.payload["margin"] + 0.2 * float(r.payload["in_stock"])
        assert r.score == pytest.approx(expected, abs=1e-4)
    assert [r.score for r in boosted] == sorted((r.score for r in boosted), reverse=True)
    assert [r.item_id for r in boosted][:5] != list(base)[:5]


def test_decay_favours_recent_items(shop_rules):
    rec = shop_rules
    plain = rec.recommend("u", k=10)
    recent = rec.recommend("u", k=10, rules={"decay": {"field": "released", "weight": 1.0, "scale_days": 20, "target": "2026-12-15"}})
    months = lambda results: sum(int(r.payload["released"][5:7]) for r in results)
    assert months(recent) > months(plain)
    assert all(r.payload["released"][5:7] in ("11", "12") for r in recent[:5])


def test_pin_hide_and_k_under_a_narrow_filter(shop_rules):
    rec = shop_rules
    top = rec.recommend("u", k=5).item_ids
    results = rec.recommend("u", k=5, rules={"pin": ["it-100", "it-050"], "hide": [top[0]]})
    assert results.item_ids[:2] == ["it-100", "it-050"] and results[0].reason == "pinned"
    assert top[0] not in results.item_ids and len(results) == 5
    narrow = rec.recommend("u", k=8, filter={"rare": True}, rules={"boost": {"margin": 1.0}})
    assert len(narrow) == 8 and all(r.payload["rare"] for r in narrow)


def test_per_request_weights_and_date_filters(shop_rules):
    rec = shop_rules
    assert rec.recommend("u", k=5, rules={"collaborative_weight": 0.0, "popularity_weight": 0.0}).item_ids
    recent = rec.search("running shoe", k=50, filter={"released": {"gte": "2026-11-01"}})
    assert recent and all(r.payload["released"] >= "2026-11-01" for r in recent)
    with pytest.raises(ConfigError, match="'released' holds dates; use ISO dates"):
        rec.search("shoe", filter={"released": {"gte": 5}})
    with pytest.raises(ConfigError, match="rules.boost on 'name': it is not a numeric or true/false catalog field"):
        rec.recommend("u", rules={"boost": {"name": 1.0}})
    with pytest.raises(ConfigError, match="rules.decay on 'margin': it is not a date field"):
        rec.recommend("u", rules={"decay": {"field": "margin"}})
    with pytest.raises(ConfigError, match="rules: pin"):
        rec.recommend("u", rules={"pin": "it-001x"})
