"""semrec.evaluation: metrics against hand-computed values, leak-free splits, and a synthetic data
set whose right answer is known (R@10 = 1)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from semrec import CollaborativeConfig, RecommenderConfig
from semrec.catalog import load_catalog
from semrec.collaborative import collaborative_vectors, impute_cold, popularity_feature
from semrec.datasets import Dataset
from semrec.errors import ConfigError
from semrec.evaluation import (
    Estimate,
    EvalTargets,
    ItemKNN,
    Popularity,
    SemrecScorer,
    TrainData,
    coverage_at_k,
    evaluate,
    intra_list_diversity,
    leave_last_out,
    markdown,
    mrr_at_k,
    ndcg_at_k,
    popularity_bias,
    rank,
    recall_at_k,
    run_benchmark,
    temporal_split,
    text_only,
)
from semrec.evaluation.cache import CachedEncoder

from conftest import WordEncoder

HAS_IMPLICIT = importlib.util.find_spec("implicit") is not None


# metrics ---------------------------------------------------------------------------------------
def test_recall_ndcg_mrr_by_hand():
    topk = np.array([[5, 2, 9], [1, 3, 4], [7, 8, 6]])
    targets = [np.array([9]), np.array([1, 4, 0]), np.array([0])]
    assert recall_at_k(topk, targets).tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    # user 0: hit at rank 3 -> 1/log2(4) = 0.5; user 1: hits at ranks 1 and 3 over ideal ranks 1..3
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert ndcg_at_k(topk, targets).tolist() == pytest.approx([0.5, (1 + 0.5) / ideal, 0.0])
    assert mrr_at_k(topk, targets).tolist() == pytest.approx([1 / 3, 1.0, 0.0])


def test_ndcg_ideal_is_capped_at_k():
    # 5 targets, K = 2, both ranks hit: perfect list
    assert ndcg_at_k(np.array([[0, 1]]), [np.arange(5)]).tolist() == pytest.approx([1.0])


def test_coverage_diversity_popularity_by_hand():
    topk = np.array([[0, 1], [0, 2]])
    assert coverage_at_k(topk, 8) == pytest.approx(3 / 8)
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # pair (0, 1): cos 0 -> distance 1; pair (0, 2): cos 1/sqrt(2)
    assert intra_list_diversity(topk, vectors).tolist() == pytest.approx([1.0, 1 - 1 / np.sqrt(2)])
    assert popularity_bias(topk, np.array([0.6, 0.2, 0.0])).tolist() == pytest.approx([0.4, 0.3])


def test_estimate_standard_error():
    est = Estimate.of(np.array([0.0, 1.0, 0.0, 1.0]))
    assert est.mean == 0.5 and est.n == 4
    assert est.se == pytest.approx(np.std([0, 1, 0, 1], ddof=1) / 2)


# splits ----------------------------------------------------------------------------------------
def _events(n_users: int = 4, n_items: int = 6) -> pd.DataFrame:
    rows = []
    for u in range(n_users):
        for step in range(n_items):
            rows.append({"user_id": f"u{u}", "item_id": f"i{(u + step) % n_items}", "kind": "view", "ts": 100.0 * u + step, "weight": 1.0})
    return pd.DataFrame(rows)


def test_leave_last_out_never_leaks_a_held_out_event():
    events = _events()
    val, test = leave_last_out(events)
    for split, held in ((val, 2), (test, 1)):
        assert len(split.targets) == 4
        for user, group in events.groupby("user_id"):
            ordered = group.sort_values("ts")
            train = split.train[split.train["user_id"] == user]
            target = split.targets[split.targets["user_id"] == user].iloc[0]
            assert len(train) == len(group) - held
            assert train["ts"].max() < target["ts"] == ordered["ts"].iloc[-held]
            assert split.tag_cutoff[user] == target["ts"]
    # the validation split trains on neither held-out event
    merged = val.train.merge(test.targets, on=["user_id", "item_id", "ts"])
    assert merged.empty


def test_leave_last_out_breaks_time_ties_deterministically():
    ev = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "ts": [1.0, 2.0, 2.0, 2.0]})
    _, test = leave_last_out(ev)
    assert test.targets["item_id"].tolist() == ["d"]  # ties keep the input order
    with pytest.raises(ConfigError, match="min_events=2"):
        leave_last_out(ev, min_events=2)


def test_temporal_split_trains_only_on_the_past():
    events = _events(n_users=6, n_items=10).assign(ts=lambda f: np.arange(len(f), dtype=float))
    val, test = temporal_split(events, test_fraction=0.2, validation_fraction=0.2)
    assert test.train["ts"].max() < test.tag_cutoff <= test.targets["ts"].min()
    assert val.train["ts"].max() < val.tag_cutoff <= val.targets["ts"].min()
    assert val.targets["ts"].max() < test.tag_cutoff
    seen = set(zip(test.train["user_id"], test.train["item_id"]))
    assert not any(pair in seen for pair in zip(test.targets["user_id"], test.targets["item_id"]))
    with pytest.raises(ConfigError, match="test_fraction=1.5"):
        temporal_split(events, test_fraction=1.5)


def test_tags_dated_after_the_split_never_reach_item_text():
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "name": ["Alpha", "Beta", "Gamma"]})
    events = pd.DataFrame(
        {"user_id": ["u"] * 3 + ["v"] * 3, "item_id": ["a", "b", "c"] * 2, "kind": "view", "ts": [1.0, 2, 3, 10, 20, 30], "weight": 1.0}
    )
    tags = pd.DataFrame(
        {
            "user_id": ["u", "u", "v", "v"],
            "item_id": ["c", "c", "a", "a"],
            # u tags c before its validation event (ts 2), then "spoiler" at its test time;
            # v tags a before its validation event (ts 20) and again after its test event
            "tag": ["early", "spoiler", "classic", "future"],
            "ts": [1.5, 3.0, 15.0, 31.0],
        }
    )
    ds = Dataset("toy", items, events, tags)
    val, test = leave_last_out(ds.events)
    texts = {i.item_id: i.text for i in load_catalog(ds.catalog(test.tag_cutoff)).items}
    assert "early" in texts["c"] and "spoiler" not in texts["c"]
    assert "classic" in texts["a"] and "future" not in texts["a"]
    val_texts = " ".join(i.text for i in load_catalog(ds.catalog(val.tag_cutoff)).items)
    assert "spoiler" not in val_texts and "future" not in val_texts
    t_val, _ = temporal_split(ds.events, test_fraction=0.3, validation_fraction=0.3)
    temporal_texts = " ".join(i.text for i in load_catalog(ds.catalog(t_val.tag_cutoff)).items)
    assert all(tag not in temporal_texts for tag in tags.loc[tags["ts"] >= t_val.tag_cutoff, "tag"])


# protocol --------------------------------------------------------------------------------------
def _train_data(events: pd.DataFrame, items: list[str]) -> TrainData:
    catalog = load_catalog(pd.DataFrame({"item_id": items, "name": [f"item {i}" for i in items]}))
    return TrainData.build(events, catalog.items)


def test_rank_excludes_history_unless_asked():
    ev = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "a"], "kind": "view", "ts": [1.0, 2, 3], "weight": 1.0})
    data = _train_data(ev, ["a", "b", "c", "d"])
    pop = Popularity().fit(data)
    u = np.array([data.user_index["u"]])
    assert data.item_ids[rank(pop, data, u, 2)[0]].tolist() == ["c", "d"]
    assert data.item_ids[rank(pop, data, u, 2, exclude_seen=False)[0]].tolist() == ["a", "b"]


def test_cold_slice_counts_targets_with_at_most_two_training_interactions():
    ev = pd.DataFrame(
        {"user_id": list("uuvvwwxx"), "item_id": list("abababac"), "kind": "view", "ts": np.arange(8.0), "weight": 1.0}
    )
    data = _train_data(ev, ["a", "b", "c", "d"])
    targets = EvalTargets(np.array([0, 1]), [np.array([3]), np.array([0])])  # d: 0 interactions, a: 4
    result = evaluate(Popularity().fit(data), data, targets, k=2)
    assert result["cold_recall@2"].n == 1


def test_itemknn_scores_by_cooccurrence():
    ev = pd.DataFrame(
        {"user_id": ["u", "u", "v", "v", "w"], "item_id": ["a", "b", "a", "b", "a"], "kind": "view", "ts": np.arange(5.0), "weight": 1.0}
    )
    data = _train_data(ev, ["a", "b", "c"])
    scores = ItemKNN(k=1).fit(data).score(np.array([data.user_index["w"]]))
    assert scores[0].argmax() == data.item_index["b"]


def test_collaborative_vectors_and_cold_imputation():
    import scipy.sparse as sp

    X = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    cf = collaborative_vectors(X, 2)
    assert cf[0] @ cf[1] == pytest.approx(1.0, abs=1e-5) and cf[0] @ cf[2] == pytest.approx(0.0, abs=1e-5)
    assert np.allclose(cf[3], 0)  # no interactions, no collaborative signal of its own
    text = np.array([[1, 0], [1, 0], [0, 1], [1, 0.1]], np.float32)
    shrunk = impute_cold(cf, text, np.array([2, 2, 1, 0]), shrinkage=1.0, neighbours=1, min_count=2)
    assert shrunk[3] @ cf[0] > 0.5  # the new item borrows from its nearest warm item by text
    assert popularity_feature(np.array([0, 1, 3])).tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_cached_encoder_encodes_each_text_once(tmp_path):
    inner = WordEncoder()
    enc = CachedEncoder(inner, tmp_path)
    first = enc.encode(["red kettle", "blue teapot"])
    enc.encode(["red kettle"])
    assert inner.calls == 2
    again = CachedEncoder(WordEncoder(), tmp_path)  # from disk
    assert np.allclose(again.encode(["blue teapot", "red kettle"]), first[::-1])
    assert again.encoder.calls == 0


# the synthetic data set with a known answer ---------------------------------------------------
THEMES = ["castle knight dragon", "rocket planet orbit", "violin piano opera", "football goal league", "garden flower seed"]


def synthetic_dataset(users_per_theme: int = 6, items_per_theme: int = 8) -> Dataset:
    """Five themes; every user follows one theme, ending on the theme's two rarest items (so
    only their own theme can rank them). Text and co-occurrence both point at the target."""
    items, events = [], []
    for t, words in enumerate(THEMES):
        for j in range(items_per_theme):
            items.append({"item_id": f"t{t}i{j}", "name": f"{words} number {j}", "tags": [words.split()[0]]})
        for u in range(users_per_theme):
            user = f"t{t}u{u}"
            order = [(u + s) % (items_per_theme - 2) for s in range(4)] + [items_per_theme - 2, items_per_theme - 1]
            for step, j in enumerate(order):
                events.append({"user_id": user, "item_id": f"t{t}i{j}", "kind": "view", "ts": 1000.0 * u + 10 * t + step, "weight": 1.0})
    return Dataset("synthetic", pd.DataFrame(items), pd.DataFrame(events))


#: The default configuration with collaborative vectors small enough for the synthetic catalogue.
SMALL_DEFAULT = RecommenderConfig(collaborative=CollaborativeConfig(dim=8))


@pytest.mark.parametrize("config", [SMALL_DEFAULT, text_only()], ids=["default", "text-only"])
def test_semrec_finds_the_known_answer(config):
    ds = synthetic_dataset()
    _, test = leave_last_out(ds.events)
    catalog = load_catalog(ds.catalog(test.tag_cutoff))
    enc = CachedEncoder(WordEncoder())
    vectors = enc.encode([i.text for i in catalog.items])
    data = TrainData.build(test.train, catalog.items)
    targets = EvalTargets.build(test, data)
    scorer = SemrecScorer(vectors, enc, config).fit(data)
    result = evaluate(scorer, data, targets, k=10, item_vectors=vectors)
    assert result["recall@10"].mean == 1.0
    assert result["recall@10"].n == 30


def test_run_benchmark_reports_every_method_side_by_side(tmp_path):
    report = run_benchmark(
        dataset=synthetic_dataset(), encoder=WordEncoder(), tune=False, out_dir=tmp_path, cache_dir=None,
        config=SMALL_DEFAULT,
    )
    methods = [r["method"] for r in report["rows"]]
    online = "semrec (default), served by Recommender on Qdrant Edge"
    assert methods[:2] == ["popularity", "ItemKNN (k=10)"] and methods[-2:] == ["semrec (default)", online]
    assert ("ALS (64 factors, alpha 2)" in methods) == HAS_IMPLICIT
    by_name = {r["method"]: r["metrics"] for r in report["rows"]}
    assert by_name["semrec (default)"]["recall@10"]["mean"] == 1.0
    # every target is the theme's last item, never seen in training: a cold item only text reaches
    assert by_name["semrec (default)"]["cold_recall@10"]["mean"] == 1.0
    assert by_name["ItemKNN (k=10)"]["cold_recall@10"]["mean"] < 1.0
    # the live path (record_many, fit_collaborative, recommend on an embedded store) scores the same
    for key in ("recall@10", "ndcg@10", "mrr@10", "cold_recall@10"):
        assert by_name[online][key]["mean"] == pytest.approx(by_name["semrec (default)"][key]["mean"], abs=1e-9), key
    # (coverage is not compared: this word encoder gives a theme's items identical vectors, and
    # the store orders exact ties its own way; tests/test_collaborative.py compares lists exactly)
    saved = json.loads((tmp_path / "quality-synthetic-leave-last-out.json").read_text())
    assert saved["meta"]["users"] == 30
    table = (tmp_path / "quality-synthetic-leave-last-out.md").read_text()
    assert "| semrec (default) | 1.000 ± 0.000 |" in table
    assert markdown(report) == table


def test_run_benchmark_needs_data():
    with pytest.raises(ConfigError, match="MovieLens folder"):
        run_benchmark(out_dir=None)


@pytest.mark.slow
def test_movielens_leave_last_out_split_is_clean():
    from pathlib import Path

    from semrec.datasets import load_movielens

    root = Path("/work/shared/data/ml-latest-small")
    if not root.exists():
        pytest.skip("MovieLens latest-small is not available here")
    ds = load_movielens(root)
    val, test = leave_last_out(ds.events)
    assert test.targets["user_id"].nunique() == 610
    last = test.targets.set_index("user_id")["ts"]
    assert (test.train["ts"].to_numpy() <= test.train["user_id"].map(last).to_numpy()).all()
    assert test.train.merge(test.targets, on=["user_id", "item_id"]).empty
    allowed = ds.allowed_tags(test.tag_cutoff)
    assert (allowed["ts"].to_numpy() < allowed["user_id"].map(last).fillna(np.inf).to_numpy()).all()
