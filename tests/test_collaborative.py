"""The collaborative signal in the store: known answers, congruence with the evaluation's scorer
(one `RecommenderConfig`, the same lists and scores), new items after a fit, and clear errors."""

import numpy as np
import pandas as pd
import pytest

from semrec import CollaborativeConfig, ConfigError, ProfileConfig, RecommenderConfig
from semrec.catalog import load_catalog
from semrec.collaborative import VectorLayout
from semrec.datasets import load_dataset
from semrec.demo import sample_catalog_path, sample_events_path
from semrec.evaluation import SemrecScorer, TrainData, text_only
from semrec.evaluation.protocol import rank

#: Bought together by many users, although their texts have nothing in common.
PAIR = ("el-001", "ga-001")  # a smartphone and a garden tool


def _pair_events(catalog: pd.DataFrame, users: int = 12) -> pd.DataFrame:
    """`users` users who each view the pair plus two items of their own; then unrelated users.
    Only the pair has 3 or more interactions."""
    others = [i for i in catalog["item_id"] if i not in PAIR]
    rows, ts = [], 0
    for u in range(users):
        for item in (PAIR[0], others[2 * u], PAIR[1], others[2 * u + 1]):
            rows.append({"user_id": f"p{u}", "item_id": item, "ts": ts})
            ts += 1
    for u in range(8):
        for item in others[100 + 5 * u : 105 + 5 * u]:
            rows.append({"user_id": f"o{u}", "item_id": item, "ts": ts})
            ts += 1
    return pd.DataFrame(rows)


def _background_events(catalog: pd.DataFrame, users: int = 40) -> pd.DataFrame:
    """Every item but the pair viewed by 3 of `users` users (a catalogue with no cold items)."""
    others = [i for i in catalog["item_id"] if i not in PAIR]
    rows = [
        {"user_id": f"b{(j + shift) % users}", "item_id": item, "ts": 1000 + 3 * j + n}
        for j, item in enumerate(others)
        for n, shift in enumerate((0, 13, 27))
    ]
    return pd.DataFrame(rows)


def test_people_who_bought_this_also_bought_that(open_rec, catalog, backend):
    """Text alone cannot link a phone to a garden tool; the fitted behaviour does."""
    assert catalog.set_index("item_id").loc[PAIR[1], "category"].startswith("Garden")
    rec = open_rec(backend)
    rec.index_items(catalog)
    pairs = pd.DataFrame([{"user_id": f"p{u}", "item_id": i, "ts": 2 * u + n} for u in range(12) for n, i in enumerate(PAIR)])
    rec.record_many(pd.concat([pairs, _background_events(catalog)]))
    rec.record("probe", PAIR[0])
    before = rec.recommend("probe", k=10).item_ids
    assert PAIR[1] not in before
    report = rec.fit_collaborative()
    assert (report.users, report.items, report.warm_items) == (12 + 40 + 1, len(catalog), len(catalog))
    assert report.interactions == 12 * 2 + (len(catalog) - 2) * 3 + 1
    # default weights: second only to the phone's near-twin (text 0.89 + its own cf share)
    assert PAIR[1] in rec.recommend("probe", k=10).item_ids[:2]
    assert PAIR[1] in rec.similar(PAIR[0], k=2).item_ids
    assert PAIR[1] not in rec.search("smartphone", k=10).item_ids  # search stays text only
    # the weights are query-time settings: more weight on behaviour puts it first
    rec.config.collaborative.weight = 3.0
    assert rec.recommend("probe", k=1).item_ids == [PAIR[1]]
    assert rec.similar(PAIR[0], k=1).item_ids == [PAIR[1]]
    rec.config.collaborative.weight = 0.0
    rec.config.collaborative.popularity_weight = 0.0
    assert rec.recommend("probe", k=10).item_ids == before


CONGRUENCE = {
    "default": RecommenderConfig(),
    "tuned": RecommenderConfig(
        profile=ProfileConfig(half_life=3.0, text_weight=0.6),
        collaborative=CollaborativeConfig(dim=16, weight=2.0, popularity_weight=0.3, cold_shrinkage=1.0, cold_neighbours=3),
    ),
    "text-only": text_only(ProfileConfig(text_weight=1.0)),
}


@pytest.mark.parametrize("name", list(CONGRUENCE))
def test_the_store_serves_what_the_evaluation_measures(open_rec, encoder, name):
    """Congruence: for the same `RecommenderConfig`, a Recommender on the embedded store returns
    the lists and scores the evaluation's `SemrecScorer` computes."""
    config = CONGRUENCE[name]
    dataset = load_dataset(sample_catalog_path(), sample_events_path())
    items = load_catalog(dataset.catalog()).items
    data = TrainData.build(dataset.events, items)
    rec = open_rec("edge", config=config.model_copy(deep=True))
    rec.index_items(dataset.catalog())
    rec.record_many(sample_events_path())
    if rec.layout.hybrid:
        rec.fit_collaborative()
    vectors = encoder.encode([i.text for i in items])
    scorer = SemrecScorer(vectors, encoder, config).fit(data)
    users = np.arange(len(data.user_ids))
    top = rank(scorer, data, users, 10)
    scores = scorer.score(users)
    for row, user in enumerate(data.user_ids):
        online = rec.recommend(user, k=10, explain_results=False)
        assert online.item_ids == list(data.item_ids[top[row]]), user
        np.testing.assert_allclose([r.score for r in online], scores[row, top[row]], atol=2e-4)


def test_new_items_after_a_fit_borrow_their_text_neighbours_collaborative_part(open_rec, catalog):
    rec = open_rec("edge")
    rec.index_items(catalog)
    rec.record_many(_pair_events(catalog))
    rec.fit_collaborative()
    twin = catalog[catalog["item_id"] == PAIR[0]].assign(item_id="el-twin")
    rec.index_items(twin)
    layout = rec.layout
    stored = {h.payload["item_id"]: h.vector for h in rec.store.scroll("items", with_vectors=True)}
    cf_twin, cf_original = layout.cf_part(stored["el-twin"]), layout.cf_part(stored[PAIR[0]])
    cos = cf_twin @ cf_original / (np.linalg.norm(cf_twin) * np.linalg.norm(cf_original))
    assert cos > 0.9  # its nearest warm item by text is the original
    assert stored["el-twin"][-1] == 0.0  # no popularity yet
    # re-indexing an item with new text keeps its collaborative part
    rec.index_items(catalog[catalog["item_id"] == PAIR[0]].assign(name="Renamed phone"))
    again = next(h.vector for h in rec.store.scroll("items", with_vectors=True) if h.payload["item_id"] == PAIR[0])
    np.testing.assert_array_equal(layout.cf_part(again), cf_original)


def test_a_fit_survives_reopening(tmp_path, encoder, catalog):
    from semrec import Recommender

    with Recommender.open(tmp_path / "s", encoder=encoder) as rec:
        rec.index_items(catalog)
        rec.record_many(_pair_events(catalog))
        rec.record("probe", PAIR[0])
        rec.fit_collaborative()
        expected = rec.recommend("probe", k=10).item_ids
    # the layout is the store's: a config asking for another dimension still reads it
    config = RecommenderConfig(collaborative=CollaborativeConfig(dim=64))
    with Recommender.open(tmp_path / "s", encoder=encoder, config=config) as rec:
        assert rec.layout == VectorLayout(text=encoder.dim, collaborative=512)
        assert rec.recommend("probe", k=10).item_ids == expected


def test_text_only_store_refuses_a_fit_and_says_how(open_rec, catalog):
    rec = open_rec("edge", config={"collaborative": {"dim": 0}})
    rec.index_items(catalog)
    rec.record("u", "el-001")
    assert rec.layout == VectorLayout(text=rec.encoder.dim)
    with pytest.raises(ConfigError, match=r"created text-only.*CollaborativeConfig\(dim=512\)"):
        rec.fit_collaborative()
    assert rec.recommend("u", k=3).item_ids  # still serves text-only recommendations


def test_bad_collaborative_settings_are_refused():
    with pytest.raises(ValueError, match="cold_shrinkage"):
        CollaborativeConfig(cold_shrinkage=-1)
    with pytest.raises(ValueError, match="extra"):
        CollaborativeConfig(dimension=8)
