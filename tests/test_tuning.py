"""Tuning: grids are setting paths of `RecommenderConfig`, a toy grid with a known winner that
`select` picks, trials scored as `SemrecScorer` scores, and the benchmark's levers table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from semrec import CollaborativeConfig, ConfigError, ProfileConfig, RecommenderConfig
from semrec.catalog import load_catalog
from semrec.datasets import Dataset
from semrec.evaluation import (
    EvalTargets,
    SemrecScorer,
    TrainData,
    evaluate,
    grid_search,
    leave_last_out,
    run_benchmark,
    select,
    setting_paths,
)
from semrec.evaluation.tuning import configure

from conftest import WordEncoder


# setting paths -----------------------------------------------------------------------------------
def test_a_grid_names_settings_by_their_path():
    config = configure(RecommenderConfig(), {"profile.text_weight": 0.5, "collaborative.weight": 0.0})
    assert (config.profile.text_weight, config.collaborative.weight) == (0.5, 0.0)
    assert config.profile.half_life == ProfileConfig().half_life  # everything else is the base's
    assert config.collaborative.dim == CollaborativeConfig().dim
    assert {"profile.half_life", "collaborative.popularity_weight", "collaborative.cold_shrinkage"} <= set(setting_paths())


def test_an_unknown_path_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'collaborative\.wieght' is not a setting.*collaborative\.weight"):
        grid_search(None, None, None, None, grid={"collaborative.wieght": [0, 1]})
    with pytest.raises(ConfigError, match=r"'diversity' is not a setting.*profile\.text_weight"):
        configure(RecommenderConfig(), {"diversity": 0.3})
    with pytest.raises(ValidationError, match="text_weight"):
        configure(RecommenderConfig(), {"profile.text_weight": 2.0})  # values are checked too


# a toy grid whose winner is known ------------------------------------------------------------------
def _popularity_toy() -> tuple[TrainData, EvalTargets]:
    """Six items with one text, so only popularity can order them: a is seen by 6 users, b by 5,
    c 3, d 2, e 1, f 0. u1 has seen a, u2 a and b; each user's target is the most popular item
    they have not seen (b for u1, c for u2)."""
    seen = {"u1": "a", "u2": "ab", "f1": "abcde", "f2": "abcd", "f3": "abc", "f4": "ab"}
    events = pd.DataFrame(
        [{"user_id": u, "item_id": i, "kind": "view", "ts": float(t), "weight": 1.0} for u, items in seen.items() for t, i in enumerate(items)]
    )
    catalog = load_catalog(pd.DataFrame({"item_id": list("abcdef"), "name": ["Plain thing"] * 6}))
    data = TrainData.build(events, catalog.items)
    assert data.counts.tolist() == [6, 5, 3, 2, 1, 0]
    users = np.array([data.user_index["u1"], data.user_index["u2"]])
    return data, EvalTargets(users, [np.array([data.item_index["b"]]), np.array([data.item_index["c"]])])


def test_the_grid_finds_the_known_best_setting_and_select_picks_it():
    data, targets = _popularity_toy()
    enc = WordEncoder()
    vectors = enc.encode(["Plain thing"] * 6)
    base = RecommenderConfig(collaborative=CollaborativeConfig(dim=4, weight=0.0))
    trials = grid_search(data, targets, vectors, enc, grid={"collaborative.popularity_weight": [-1.0, 1.0]}, base=base)
    assert [t.config.collaborative.popularity_weight for t in trials] == [-1.0, 1.0]
    against, towards = trials
    # towards popularity: each target is the first unseen item
    assert towards.metrics["ndcg@10"].mean == pytest.approx(1.0)
    # against it: u1's b is 5th of its 5 unseen items, u2's c 4th of 4
    assert against.metrics["ndcg@10"].mean == pytest.approx((1 / np.log2(6) + 1 / np.log2(5)) / 2)
    assert against.metrics["mrr@10"].mean == pytest.approx((1 / 5 + 1 / 4) / 2)
    assert select(trials) is towards
    assert select(trials[::-1]) is towards  # not the first one: the best one


def test_settings_that_cannot_change_the_scores_are_scored_once():
    data, targets = _popularity_toy()
    enc = WordEncoder()
    grid = {"collaborative.weight": [0.0, 1.0], "collaborative.cold_shrinkage": [0.0, 3.0], "collaborative.dim": [0, 4]}
    trials = grid_search(data, targets, enc.encode(["Plain thing"] * 6), enc, grid=grid)
    scored = [(c.weight, c.cold_shrinkage, c.dim) for c in (t.config.collaborative for t in trials)]
    # weight 0: the fit's settings do not matter; dim 0 (text only): no collaborative setting does
    assert scored == [(0.0, 0.0, 0), (0.0, 0.0, 4), (1.0, 0.0, 4), (1.0, 3.0, 4)]


# trials are scored as the scorer (and so the store) scores --------------------------------------
THEMES = ["castle", "rocket", "violin", "football"]


def _themed_dataset(seed: int = 0) -> Dataset:
    """Four themes of ten items, each named by its theme and two random words; six users per
    theme, seven events each, one of them in another theme."""
    rng = np.random.default_rng(seed)
    vocab = [f"{a}{b}" for a in "bcdfghjklm" for b in ("ax", "ek", "ip", "ol", "um", "yr")]
    items, events = [], []
    for t, theme in enumerate(THEMES):
        for j in range(10):
            items.append({"item_id": f"t{t}i{j}", "name": f"{theme} {' '.join(rng.choice(vocab, 2, replace=False))}"})
    for t in range(len(THEMES)):
        for u in range(6):
            picks = [f"t{t}i{j}" for j in rng.choice(10, 6, replace=False)]
            picks.insert(int(rng.integers(0, 4)), f"t{(t + 1) % 4}i{int(rng.integers(0, 10))}")
            events += [{"user_id": f"t{t}u{u}", "item_id": i, "kind": "view", "ts": 100.0 * u + s, "weight": 1.0} for s, i in enumerate(picks)]
    return Dataset("themed", pd.DataFrame(items), pd.DataFrame(events))


def test_every_trial_scores_what_semrec_scorer_scores():
    ds = _themed_dataset()
    val, _ = leave_last_out(ds.events)
    catalog = load_catalog(ds.catalog(val.tag_cutoff))
    enc = WordEncoder()
    vectors = enc.encode([i.text for i in catalog.items])
    data = TrainData.build(val.train, catalog.items)
    targets = EvalTargets.build(val, data)
    grid = {
        "profile.half_life": [1.0, 4.0],
        "profile.text_weight": [0.0, 0.5],
        "collaborative.weight": [0.0, 1.0],
        "collaborative.popularity_weight": [0.0, -0.5],
    }
    base = RecommenderConfig(collaborative=CollaborativeConfig(dim=8))
    trials = grid_search(data, targets, vectors, enc, grid=grid, base=base)
    assert len(trials) == 16
    for trial in trials:
        expect = evaluate(SemrecScorer(vectors, enc, trial.config).fit(data), data, targets, k=10)
        for key in ("recall@10", "ndcg@10", "mrr@10", "coverage@10"):
            assert trial.metrics[key] == pytest.approx(expect[key], abs=1e-9), (trial.config, key)


def test_the_benchmark_tunes_over_recommender_settings(tmp_path):
    config = RecommenderConfig(collaborative=CollaborativeConfig(dim=8))
    grid_report = run_benchmark(
        dataset=_themed_dataset(), encoder=WordEncoder(), tune=True, baselines=False, online=False, out_dir=None,
        cache_dir=None, config=config,
    )
    chosen = RecommenderConfig(**grid_report["meta"]["chosen"]["semrec"])
    assert chosen.profile.text_weight > 0  # the shipped default must blend the summary in
    levers = {row["lever"] for row in grid_report["levers"]}
    assert {"selected", "default", "profile.half_life", "profile.text_weight", "collaborative.weight"} <= levers
    rows = {r["method"]: r for r in grid_report["rows"]}
    assert rows["semrec (default)"]["config"] == config.model_dump(include={"profile", "collaborative"})
