"""Crash safety: a real child process running the re-index job is killed with SIGKILL at random
batches (first index, incremental update, model change / blue-green), the job is run again, and
the store must hold exactly the catalog: 0 missing, 0 unexpected, 0 duplicate ids, every payload
and vector as the catalog says, with at most one batch encoded twice."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reindex_child import CachedEncoder, cache_vectors
from semrec.catalog import load_catalog
from semrec.recommender import STORE_MANAGED_KEYS
from semrec.reindex import reindex
from semrec.store import EdgeStore

CHILD = str(Path(__file__).with_name("reindex_child.py"))
BATCH = 16
KILLS = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory, catalog, shared_encoder):
    root = tmp_path_factory.mktemp("crash")
    v1 = catalog.iloc[:236].copy()
    v2 = v1.drop(index=v1.index[200:220]).copy()  # 20 removed
    v2.loc[v2.index[:30], "name"] = [f"{n} (2027 edition)" for n in v2.name.iloc[:30]]  # 30 texts changed
    v2.loc[v2.index[40:60], "price"] = 9.99  # 20 payloads changed
    v2 = __import__("pandas").concat([v2, catalog.iloc[236:]])  # 20 new
    v2.to_parquet(root / "v2.parquet", index=False)
    model_a = cache_vectors(root / "model-a", shared_encoder, v1, v2)
    # a second "model": the same texts, other vectors and fingerprint (a real second model is
    # exercised in test_reindex.py; here only the job's crash behaviour matters)
    model_b = root / "model-b"
    shutil.copytree(model_a, model_b)
    vectors = np.load(model_b / "vectors.npy")
    vectors[:, ::2] *= -1
    np.save(model_b / "vectors.npy", vectors)
    fingerprint = json.loads((model_b / "fingerprint.json").read_text())
    (model_b / "fingerprint.json").write_text(json.dumps({**fingerprint, "weights": "perturbed"}))
    base = root / "base"
    reindex(v1, base, encoder=CachedEncoder(model_a), batch_size=64)
    return root, base, model_a, model_b, load_catalog(v2).items


SCENARIOS = {  # name: (start from the v1 store, model, items to encode)
    "first index": (False, "a", 236),
    "incremental": (True, "a", 50),
    "model change": (True, "b", 236),
}


def test_kill_9_at_random_batches_then_resume(setup, tmp_path):
    root, base, model_a, model_b, items = setup
    caches = {"a": model_a, "b": model_b}
    rng = random.Random(int(os.environ.get("SEMREC_CRASH_SEED", "7")))
    kills, trial, report = 0, 0, []
    while kills < KILLS:
        assert trial < 2 * KILLS, f"only {kills} of {trial} trials were killed before finishing: {report}"
        name = list(SCENARIOS)[trial % len(SCENARIOS)]
        from_base, model, needed = SCENARIOS[name]
        store, trace = tmp_path / f"store-{trial}", tmp_path / f"trace-{trial}"
        if from_base:
            shutil.copytree(base, store)
        batches = -(-needed // BATCH)
        kill_at, extra = rng.randint(1, batches), rng.uniform(0, 0.15)
        child = subprocess.Popen(
            [sys.executable, CHILD, str(caches[model]), str(root / "v2.parquet"), str(store), "full", str(BATCH), str(trace), "0.01"],
            stdout=subprocess.DEVNULL,
        )
        killed = _kill_after(child, trace, kill_at, extra)
        kills += killed
        before = _encoded(trace)
        resumed = reindex(root / "v2.parquet", store, encoder=CachedEncoder(caches[model]), batch_size=BATCH)
        again = reindex(root / "v2.parquet", store, encoder=CachedEncoder(caches[model]), batch_size=BATCH)
        report.append((name, kill_at, killed, before, resumed.encoded))
        _check_store(store, items, CachedEncoder(caches[model]))
        assert before + resumed.encoded <= needed + BATCH, report[-1]  # at most one batch twice
        assert again.encoded == again.upserted == again.deleted == 0  # and then nothing to do
        trial += 1


def _kill_after(child: subprocess.Popen, trace: Path, batches: int, extra: float) -> bool:
    while child.poll() is None and _calls(trace) < batches:
        time.sleep(0.005)
    time.sleep(extra)
    if child.poll() is not None:
        return False
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return True


def _calls(trace: Path) -> int:
    return len(trace.read_text().splitlines()) if trace.exists() else 0


def _encoded(trace: Path) -> int:
    return sum(int(n) for n in trace.read_text().split()) if trace.exists() else 0


def _check_store(path: Path, items, encoder) -> None:
    store = EdgeStore(path)  # follows CURRENT to the live version
    try:
        hits = list(store.scroll("items", with_vectors=True))
        ids = [h.payload["item_id"] for h in hits]
        expected = {i.item_id: i for i in items}
        assert len(ids) == len(set(ids)) == len({h.id for h in hits}), "duplicate ids"
        assert not expected.keys() - set(ids), f"missing: {sorted(expected.keys() - set(ids))[:5]}"
        assert not set(ids) - expected.keys(), f"unexpected: {sorted(set(ids) - expected.keys())[:5]}"
        assert store.count("items") == len(expected)
        vectors = encoder.encode([expected[i].text for i in ids])
        for hit, vector in zip(hits, vectors):
            item = expected[hit.payload["item_id"]]
            assert {k: v for k, v in hit.payload.items() if k not in STORE_MANAGED_KEYS} == item.payload()
            # [text | collaborative | popularity]: the text part is the item's; no fit ran, so the rest is 0
            np.testing.assert_allclose(hit.vector[: len(vector)], vector, atol=1e-5)
            assert not hit.vector[len(vector) :].any()
    finally:
        store.close()
