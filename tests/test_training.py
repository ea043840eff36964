"""Fine-tuning: pairs from training events only, a known pair moves closer, save/load, the card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semrec import CollaborativeConfig, ProfileConfig, RecommenderConfig, load_encoder
from semrec.catalog import load_catalog
from semrec.evaluation.splits import leave_last_out
from semrec.profiles import Event, UserProfile
from semrec.training import (
    TrainConfig,
    finetune,
    history_pairs,
    load_model,
    no_duplicate_batches,
    read_card,
    train,
)
from semrec.training.adapter import AdaptedEncoder, train_adapter
from semrec.training.pairs import Pair

# Two "worlds": whoever meets a gadget next meets a gadget; each user alternates inside one world.
GADGETS = ["Zorblax kettle", "Quimby lamp", "Frobnitz toaster", "Wuggle fan", "Plonk radio", "Snarf clock"]
GARDEN = ["Tulip bulbs", "Garden hose", "Rose pruner", "Compost bin", "Watering can", "Seed tray"]


@pytest.fixture(scope="module")
def tiny():
    items = pd.DataFrame(
        {
            "item_id": [f"g{i}" for i in range(6)] + [f"p{i}" for i in range(6)],
            "name": GADGETS + GARDEN,
            "category": ["Gadgets"] * 6 + ["Garden"] * 6,
        }
    )
    rows = []
    for u in range(12):
        world = "g" if u % 2 == 0 else "p"
        for t in range(6):
            rows.append({"user_id": f"u{u}", "item_id": f"{world}{(u + t) % 6}", "ts": float(t), "kind": "view"})
    return items, pd.DataFrame(rows)


def test_pairs_never_use_validation_or_test_events(tiny):
    items, events = tiny
    val, test = leave_last_out(events)
    catalog = load_catalog(items).items
    pairs = history_pairs(val.train, catalog, item_pairs=True)
    used = {(p.user_id, p.item_id, p.ts) for p in pairs}
    held = set(zip(val.targets["user_id"], val.targets["item_id"], val.targets["ts"]))
    held |= set(zip(test.targets["user_id"], test.targets["item_id"], test.targets["ts"]))
    assert pairs and not used & held
    # every user's last two events are held out: no pair comes from ts 4 or 5
    assert max(p.ts for p in pairs) == 3.0
    only_items = history_pairs(val.train, catalog, item_pairs=True, history=False)
    assert only_items and {p.kind for p in only_items} == {"item"}
    assert len(history_pairs(val.train, catalog, max_per_user=2)) == 2 * events["user_id"].nunique()


def test_finetune_draws_pairs_from_the_validation_training_split(tiny, tmp_path, monkeypatch):
    from semrec.training import job

    seen = {}
    real = job.history_pairs

    def spy(events, *args, **kwargs):
        seen["events"] = events.copy()
        return real(events, *args, **kwargs)

    monkeypatch.setattr(job, "history_pairs", spy)
    items, events = tiny
    finetune(items, events, tmp_path / "m", method="adapter", config=TrainConfig(max_steps=2, batch_size=4), evaluate_test=False)
    last_two = events.sort_values("ts").groupby("user_id").tail(2)
    passed = set(zip(seen["events"]["user_id"], seen["events"]["item_id"], seen["events"]["ts"]))
    assert not passed & set(zip(last_two["user_id"], last_two["item_id"], last_two["ts"]))


def test_anchor_is_the_library_summary_of_the_history_before_the_event(tiny):
    items, events = tiny
    catalog = load_catalog(items).items
    config = ProfileConfig(summary_recent=3)
    pairs = history_pairs(events[events["user_id"] == "u0"], catalog, config)
    by_id = {i.item_id: i for i in catalog}
    profile = UserProfile(user_id="u0")
    for row in events[events["user_id"] == "u0"].head(3).itertuples():
        item = by_id[row.item_id]
        profile.add(Event(user_id="u0", item_id=row.item_id, kind="view", ts=row.ts), {"name": item.name, "category": item.category, "tags": item.tags}, config)
    assert pairs[2].anchor == profile.summary(config)
    assert pairs[2].positive == by_id[events[events["user_id"] == "u0"].iloc[3]["item_id"]].text


def test_batches_have_no_duplicate_texts_or_items():
    pairs = [Pair(f"a{i % 7}", f"item {i % 5}", "u", str(i % 5), float(i)) for i in range(40)]
    batches = no_duplicate_batches(pairs, 4, seed=1)
    for _ in range(30):
        batch = next(batches)
        assert len({pairs[i].item_id for i in batch}) == len(batch)
        texts = [pairs[i].anchor for i in batch] + [pairs[i].positive for i in batch]
        assert len(set(texts)) == len(texts)


def _known_pairs() -> list[Pair]:
    # each gadget name should come to mean "the next gadget"; garden likewise
    pairs = []
    for names, world in ((GADGETS, "g"), (GARDEN, "p")):
        for i, name in enumerate(names):
            nxt = names[(i + 1) % len(names)]
            pairs.append(Pair(f"Recently: {name}.", f"{nxt}.", "u", f"{world}{(i + 1) % 6}", float(i)))
    return pairs


def _cos(encoder, a: str, b: str) -> float:
    va, vb = encoder.encode([a, b])
    return float(va @ vb)


def test_full_finetuning_moves_a_known_pair_closer():
    from semrec.training import LiveEncoder

    pairs = _known_pairs()
    model = load_model(None, device="cpu")
    encoder = LiveEncoder(model)
    before = _cos(encoder, "Recently: Zorblax kettle.", "Quimby lamp.")
    result = train(model, pairs, TrainConfig(max_steps=6, batch_size=6, learning_rate=3e-4, warmup=0, device="cpu", seed=0))
    after = _cos(encoder, "Recently: Zorblax kettle.", "Quimby lamp.")
    assert result.steps == 6 and result.pairs_seen == 36
    assert after > before + 0.01


def test_adapter_moves_a_known_pair_closer(real_encoder):
    pairs = _known_pairs()
    anchors = real_encoder.encode([p.anchor for p in pairs])
    positives = real_encoder.encode([p.positive for p in pairs])
    adapter, _result = train_adapter(anchors, positives, pairs, TrainConfig(max_steps=60, batch_size=6, learning_rate=1e-2, warmup=0))
    tuned = AdaptedEncoder(real_encoder, adapter)
    assert _cos(tuned, "Recently: Zorblax kettle.", "Quimby lamp.") > _cos(real_encoder, "Recently: Zorblax kettle.", "Quimby lamp.") + 0.02
    assert np.allclose(np.linalg.norm(tuned.encode(["x", "y"]), axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def tuned_folder(tiny, tmp_path_factory):
    items, events = tiny
    out = tmp_path_factory.mktemp("ft") / "model"
    report = finetune(items, events, out, method="adapter", config=TrainConfig(max_steps=20, batch_size=4, eval_every=10, learning_rate=1e-2))
    return out, report


def test_saved_model_loads_and_gives_the_same_vectors(tuned_folder, real_encoder):
    import torch

    out, _ = tuned_folder
    files = {p.name for p in Path(out).rglob("*") if p.is_file()}
    assert "model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    texts = ["Zorblax kettle. Category: Gadgets.", "Recently: Tulip bulbs; Garden hose. Favourite categories: Garden."]
    loaded = load_encoder(out, backend="torch")
    assert np.allclose(loaded.encode(texts), load_encoder(out, backend="torch").encode(texts), atol=1e-6)
    # the folder encodes what training validated: the base vectors through the adapter
    dense = next(m for m in loaded.model if type(m).__name__ == "Dense")
    base = torch.as_tensor(real_encoder.encode(texts))
    with torch.no_grad():
        expect = torch.nn.functional.normalize(base + torch.tanh(dense.linear(base)), dim=-1).numpy()
    assert np.allclose(loaded.encode(texts), expect, atol=1e-5)
    assert loaded.fingerprint.weights != real_encoder.fingerprint.weights


def test_model_card_holds_the_metrics(tiny, tuned_folder, real_encoder):
    from semrec.datasets import load_dataset
    from semrec.training import SplitEvaluator

    out, report = tuned_folder
    card = read_card(out)
    assert card["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert card["method"] == "adapter"
    for split in ("validation", "test"):
        for when in ("before", "after"):
            assert card["metrics"][split][when] == pytest.approx(report.metrics[split][when], abs=0, nan_ok=True)
    # "before" is the base model measured by the evaluator on each split (validation: the
    # text-only scorer's means; test: with standard errors)
    items, events = tiny
    val, test = leave_last_out(events)
    dataset = load_dataset(items, events)
    assert card["metrics"]["validation"]["before"] == pytest.approx(SplitEvaluator(dataset, val)(real_encoder), abs=1e-6, nan_ok=True)
    expect = SplitEvaluator(dataset, test).measure(real_encoder, errors=True)
    assert card["metrics"]["test"]["before"] == pytest.approx(expect, abs=1e-6, nan_ok=True)
    assert card["training"]["steps"] > 0 and card["training"]["loss"].startswith("MultipleNegativesRankingLoss+logQ")
    assert card["data"]["pairs"] == card["data"]["history_pairs"] + card["data"]["item_pairs"] > 0
    readme = (Path(out) / "README.md").read_text()
    assert "ndcg@10" in readme and "base_model: sentence-transformers/all-MiniLM-L6-v2" in readme
    assert report.metrics["test"]["after"]["ndcg@10"] == card["metrics"]["test"]["after"]["ndcg@10"]


def test_unknown_method_is_refused(tiny, tmp_path):
    items, events = tiny
    with pytest.raises(ValueError, match="method='fast' is not valid"):
        finetune(items, events, tmp_path / "m", method="fast")


class WorldEncoder:
    """Two dimensions, one per world: a text naming the Gadgets category is [1, 0], any other
    [0, 1]. `reverse` sends every user summary ("Recently: ...") to the other world."""

    dim = 2

    def __init__(self, reverse: bool = False) -> None:
        self.reverse = reverse

    def encode(self, texts, **_) -> np.ndarray:
        gadget = [("gadgets" in t.lower()) != (self.reverse and t.startswith("Recently:")) for t in texts]
        return np.array([[1.0, 0.0] if g else [0.0, 1.0] for g in gadget], np.float32).reshape(-1, 2)


def test_split_evaluator_gets_the_known_answers(tiny):
    """On the test split each user has seen 5 of their world's 6 items; the 7 candidates are the
    target (the 6th) and the other world's 6 items."""
    from semrec.datasets import load_dataset
    from semrec.training import SplitEvaluator

    items, events = tiny
    _, test = leave_last_out(events)
    dataset = load_dataset(items, events)
    tester = SplitEvaluator(dataset, test)
    # the right world: the target is the only candidate scoring 1, so it ranks first
    right = tester(WorldEncoder())
    assert (right["recall@10"], right["ndcg@10"], right["mrr@10"]) == pytest.approx((1.0, 1.0, 1.0))
    # the summary alone (text_weight 1) pointing at the other world: the target ranks 7th of 7
    summary_only = ProfileConfig(text_weight=1.0)
    wrong = SplitEvaluator(dataset, test, summary_only)(WorldEncoder(reverse=True))
    assert (wrong["recall@10"], wrong["ndcg@10"], wrong["mrr@10"]) == pytest.approx((1.0, 1 / np.log2(8), 1 / 7))
    # the collaborative term: own-world items score below 1 and the other world's ~0, so it
    # overrules the misleading text (1 for the other world, 0 for the target) at weight 2, not 1
    def hybrid(weight: float) -> RecommenderConfig:
        return RecommenderConfig(profile=summary_only, collaborative=CollaborativeConfig(dim=4, weight=weight, popularity_weight=0.0))

    assert tester.measure(WorldEncoder(reverse=True), hybrid(1.0))["ndcg@10"] == pytest.approx(1 / np.log2(8))
    measured = tester.measure(WorldEncoder(reverse=True), hybrid(2.0), errors=True)
    assert (measured["ndcg@10"], measured["ndcg@10_se"], measured["ndcg@10_n"]) == (pytest.approx(1.0), 0.0, 12)


def test_finetune_measures_the_hybrid_scorer_on_test(tiny, tmp_path):
    from semrec.datasets import load_dataset
    from semrec.training import SplitEvaluator

    items, events = tiny
    config = RecommenderConfig(collaborative=CollaborativeConfig(dim=4, weight=1.0, popularity_weight=-0.1, cold_shrinkage=3.0, cold_neighbours=2))
    report = finetune(items, events, tmp_path / "m", method="adapter", hybrid=config,
                      config=TrainConfig(max_steps=10, batch_size=4, eval_every=5, learning_rate=1e-2))
    # the hybrid rows are SemrecScorer under `config`, for the base and the fine-tuned encoder
    _, test = leave_last_out(events)
    tester = SplitEvaluator(load_dataset(items, events), test)
    for when, encoder in (("before", report.base), ("after", report.encoder)):
        assert report.metrics["test_hybrid"][when] == pytest.approx(tester.measure(encoder, config, errors=True), abs=1e-6, nan_ok=True)
    card = read_card(tmp_path / "m")
    assert card["hybrid"] == config.model_dump(include={"profile", "collaborative"})
    for when in ("before", "after"):
        assert card["metrics"]["test_hybrid"][when] == pytest.approx(report.metrics["test_hybrid"][when], abs=0, nan_ok=True)
    # the in-memory encoder is the saved folder's
    texts = ["Zorblax kettle. Category: Gadgets."]
    assert np.allclose(report.encoder.encode(texts), load_encoder(tmp_path / "m", backend="torch").encode(texts), atol=1e-5)
