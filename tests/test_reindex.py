"""Re-indexing jobs: incremental by content hash, blue-green with rollback, bad rows and exit
codes, uploads, and queries that keep working while a switch happens (real model, real stores)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qdrant_client import QdrantClient

from semrec import ModelMismatchError, Recommender, StoreLockedError
from semrec.reindex import UploadConfig, UploadingStore, is_transient, reindex, rollback, with_retries
from semrec.reindex.upload import byte_batches
from semrec.store import point_id

from conftest import CountingEncoder
from reindex_child import cache_vectors


CHILD = str(Path(__file__).with_name("reindex_child.py"))


class RecordingEncoder:
    """The shared counting encoder, remembering which texts each run asked to encode."""

    def __init__(self, inner):
        self.inner, self.texts = inner, []
        self.name, self.dim, self.backend, self.fingerprint = inner.name, inner.dim, inner.backend, inner.fingerprint

    def encode(self, texts, **kw):
        self.texts += list(texts)
        return self.inner.encode(texts, **kw)

    def encode_query(self, text):
        return self.inner.encode_query(text)


@pytest.fixture
def indexed(tmp_path, catalog, encoder):
    """The sample catalog indexed by the job into an embedded store."""
    store = tmp_path / "store"
    first = reindex(catalog, store, encoder=encoder, batch_size=64)
    assert first.new == len(catalog) and first.switched and first.version == "v0001"
    return store


def test_unchanged_catalog_costs_no_encoding_and_no_upserts(indexed, catalog, encoder):
    encoder.encoded = 0
    again = reindex(catalog, indexed, encoder=encoder)
    assert (again.encoded, again.upserted, again.unchanged, again.new, again.changed) == (0, 0, len(catalog), 0, 0)
    assert encoder.encoded == 0 and not again.blue_green


def test_one_percent_changed_reencodes_exactly_those(indexed, catalog, encoder):
    changed = catalog.copy()
    renamed = ["el-001", "ki-014"]  # text changes: re-encoded
    changed.loc[changed.item_id.isin(renamed), "name"] = ["Solar powered phone", "Ceramic tea kettle"]
    changed.loc[changed.item_id == "ga-001", "price"] = 1234.5  # payload only: vector kept
    recorder = RecordingEncoder(encoder)
    with Recommender.open(indexed, encoder=encoder) as rec:
        old_vector = rec.store.retrieve("items", [point_id("item", "ga-001")], with_vectors=True)[0].vector
    summary = reindex(changed, indexed, encoder=recorder)
    assert (summary.encoded, summary.changed, summary.payload_only, summary.unchanged) == (2, 3, 1, len(catalog) - 3)
    assert len(recorder.texts) == 2
    assert {t.split(".")[0] for t in recorder.texts} == {"Solar powered phone", "Ceramic tea kettle"}
    with Recommender.open(indexed, encoder=encoder) as rec:
        assert rec.item("ga-001")["price"] == 1234.5
        hit = rec.store.retrieve("items", [point_id("item", "ga-001")], with_vectors=True)[0]
        np.testing.assert_array_equal(hit.vector, old_vector)
        assert rec.search("solar phone", k=1)[0].item_id == "el-001"


def test_removed_rows_are_kept_by_append_and_deleted_by_full(indexed, catalog, encoder):
    smaller = catalog.iloc[10:]
    kept = reindex(smaller, indexed, encoder=encoder, mode="append")
    assert (kept.kept, kept.deleted, kept.encoded) == (10, 0, 0)
    with Recommender.open(indexed, encoder=encoder) as rec:
        assert rec.n_items == len(catalog)
    full = reindex(smaller, indexed, encoder=encoder, mode="full")
    assert (full.deleted, full.encoded) == (10, 0)
    with Recommender.open(indexed, encoder=encoder) as rec:
        assert rec.n_items == len(smaller)
        assert not set(rec.similar(smaller.item_id.iloc[0], k=300).item_ids) & set(catalog.item_id.iloc[:10])


@pytest.fixture(scope="session")
def other_encoder(tmp_path_factory, real_encoder):
    """A real second model: the packaged one with one weight perturbed."""
    from sentence_transformers import SentenceTransformer

    from semrec import load_encoder

    folder = tmp_path_factory.mktemp("other-model")
    real_encoder.model.save(str(folder))
    changed = SentenceTransformer(str(folder))
    with __import__("torch").no_grad():
        next(changed.parameters()).add_(0.05)
    changed.save(str(folder))
    return CountingEncoder(load_encoder(str(folder)))


def test_model_change_builds_blue_green_and_rollback_restores(indexed, catalog, encoder, other_encoder):
    with Recommender.open(indexed, encoder=encoder) as rec:
        for item_id in ("el-001", "el-008", "ki-001"):
            rec.record("ann", item_id)
        before = rec.recommend("ann", k=10).item_ids
        before_search = rec.search("garden hose", k=5).item_ids
        old_user = rec.store.retrieve("users", [point_id("user", "ann")], with_vectors=True)[0].vector
    summary = reindex(catalog, indexed, encoder=other_encoder)
    assert summary.blue_green and summary.switched and summary.version == "v0002"
    assert summary.encoded == len(catalog) and summary.users == 1
    with pytest.raises(ModelMismatchError, match="reindex --rebuild"):
        Recommender.open(indexed, encoder=encoder)
    with Recommender.open(indexed, encoder=other_encoder) as rec:
        assert rec.store.version == "v0002" and rec.n_items == len(catalog)
        assert rec.profile("ann").seen == ["el-001", "el-008", "ki-001"]
        new_user = rec.store.retrieve("users", [point_id("user", "ann")], with_vectors=True)[0].vector
        assert not np.allclose(new_user, old_user)  # recomputed with the new model
        assert rec.item("el-001")["popularity"] == 1.0
        assert len(rec.recommend("ann", k=10)) == 10
    assert rollback(indexed) == "v0001"
    with Recommender.open(indexed, encoder=encoder) as rec:
        assert rec.store.version == "v0001"
        assert rec.recommend("ann", k=10).item_ids == before
        assert rec.search("garden hose", k=5).item_ids == before_search
    assert json.loads((indexed / "CURRENT").read_text())["previous"] == "v0002"


def test_plain_store_is_adopted_without_reencoding(tmp_path, catalog, encoder):
    with Recommender.open(tmp_path / "plain", encoder=encoder) as rec:
        rec.index_items(catalog)
    encoder.encoded = 0
    summary = reindex(catalog, tmp_path / "plain", encoder=encoder)
    assert summary.version == "." and summary.encoded == 0 and summary.unchanged == len(catalog)
    assert encoder.encoded == 0


def test_incremental_run_refuses_a_store_held_by_a_reader(indexed, catalog, encoder):
    with Recommender.open(indexed, encoder=encoder):
        with pytest.raises(StoreLockedError, match="already open"):
            reindex(catalog.head(5), indexed, encoder=encoder)


def test_server_store_switches_aliases(tmp_path, catalog, encoder):
    client = QdrantClient(path=str(tmp_path / "server"))
    options = dict(client=client, state_dir=tmp_path / "state", encoder=encoder)
    part = catalog.head(60)
    first = reindex(part, "server", **options)
    assert first.version == "v0001" and first.switched
    again = reindex(part, "server", **options)
    assert again.encoded == 0 and again.upserted == 0 and not again.blue_green
    rebuilt = reindex(part, "server", mode="rebuild", **options)
    assert rebuilt.version == "v0002" and rebuilt.switched
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    assert aliases["semrec_items"] == "semrec_items_v0002"
    rec = Recommender(__import__("semrec").QdrantStore("server", client=client), encoder)
    assert rec.n_items == 60 and rec.search("garden", k=3)
    assert rec.refresh() is False  # nothing switched since it opened
    assert rollback("server", client=client, state_dir=tmp_path / "state") == "v0001"
    assert {a.alias_name: a.collection_name for a in client.get_aliases().aliases}["semrec_items"] == "semrec_items_v0001"
    assert rec.refresh()  # aliases switched by themselves; refresh says so and clears caches
    assert rec.n_items == 60 and rec.search("garden", k=3)


def test_bad_rows_go_to_rejects_and_exit_codes(tmp_path, catalog, encoder, monkeypatch, capsys):
    from indexing import reindex as entry

    monkeypatch.setattr("semrec.reindex.job.load_encoder", lambda model=None: encoder)
    frame = catalog.head(20).copy()
    frame.loc[3, "name"] = ""
    frame.loc[5, "item_id"] = frame.loc[4, "item_id"]
    path = tmp_path / "catalog.jsonl"
    frame.to_json(path, orient="records", lines=True)
    code = entry.main([str(path), "--store", str(tmp_path / "s"), "--quiet"])
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert code == 3 and summary["rejected"] == 2 and summary["new"] == 18
    rejects = [json.loads(line) for line in (tmp_path / "catalog.rejects.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejects] == [3, 5] and "duplicate item_id" in rejects[1]["reason"]
    assert set(rejects[0]) >= {"row", "reason"}

    frame.head(3).to_csv(tmp_path / "good.csv", index=False)
    assert entry.main([str(tmp_path / "good.csv"), "--store", str(tmp_path / "s2"), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["new"] == 3
    pd.DataFrame({"id": [1], "title": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert entry.main([str(tmp_path / "bad.csv"), "--store", str(tmp_path / "s3"), "--quiet"]) == 1
    assert "no 'item_id' column" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert entry.main([str(tmp_path / "missing.csv"), "--store", str(tmp_path / "s3"), "--quiet"]) == 2
    with pytest.raises(SystemExit) as usage:
        entry.main([str(path), "--store", "s", "--full", "--append"])
    assert usage.value.code == 2


def test_upload_batches_by_bytes_and_count_and_retries_only_transient_errors():
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    vectors = np.zeros((10, 4), dtype=np.float32)
    payloads = [{"text": "x" * (1000 if i == 3 else 10)} for i in range(10)]
    sizes = [s.stop - s.start for s in byte_batches(vectors, payloads, max_points=4, max_bytes=1200)]
    assert sizes == [3, 1, 4, 2]  # by count (4), and by bytes: the big point goes alone

    config = UploadConfig(retries=3, backoff_s=0.1, max_backoff_s=0.3)
    for transient in (
        UnexpectedResponse(503, "Service Unavailable", b"", {}),
        UnexpectedResponse(429, "Too Many Requests", b"", {}),
        ResponseHandlingException(ConnectionError("reset")),
        TimeoutError("read timed out"),
    ):
        calls, waits = [], []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise transient
            return "ok"

        assert with_retries(flaky, config, sleep=waits.append) == "ok" and len(calls) == 3
        assert 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2  # exponential, with jitter
    for permanent in (UnexpectedResponse(400, "Bad Request", b"wrong vector size", {}), ValueError("bad"), KeyError("x")):
        assert not is_transient(permanent)
        calls = []
        with pytest.raises(type(permanent)):
            with_retries(lambda: calls.append(1) or (_ for _ in ()).throw(permanent), config, sleep=lambda s: None)
        assert len(calls) == 1  # never retried


def test_uploading_store_streams_in_parallel(tmp_path):
    """Three streams: the first three requests are in flight at the same time, on three upload
    threads (each waits at a barrier for the other two; sent one after another, the first would
    time out there), and every point lands once."""
    import threading

    from semrec.store import QdrantStore

    class Watched:
        """A server store whose upserts record their thread and meet at a barrier."""

        kind = "qdrant"

        def __init__(self, inner, streams):
            self.inner, self.barrier, self.lock = inner, threading.Barrier(streams, timeout=10), threading.Lock()
            self.threads, self.sizes = [], []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def upsert(self, name, ids, vectors, payloads, **conditions):
            with self.lock:
                first = len(self.threads) < self.barrier.parties
                self.threads.append(threading.current_thread().name)
                self.sizes.append(len(ids))
            if first:
                self.barrier.wait()  # BrokenBarrierError unless the other streams are sending too
            self.inner.upsert(name, ids, vectors, payloads, **conditions)

    watched = Watched(QdrantStore(":memory:"), streams=3)
    store = UploadingStore(watched, UploadConfig(max_points=7, streams=3))
    store.create_collection("items", 4, {})
    ids = [point_id("item", str(i)) for i in range(50)]
    store.upsert("items", ids, np.eye(4, dtype=np.float32)[np.arange(50) % 4], [{"item_id": str(i)} for i in range(50)])
    assert sorted(watched.sizes) == [1] + [7] * 7  # 50 points in requests of at most 7
    assert len(set(watched.threads[:3])) == 3 and all(t.startswith("semrec-upload") for t in watched.threads)
    assert store.count("items") == 50 and store.upserted == 50
    store.close()


def test_queries_during_a_blue_green_switch_never_fail(tmp_path, catalog, encoder, indexed):
    """A reader holds the live version and queries in a loop while another process rebuilds
    the store (blue-green) and switches; the reader follows with refresh()."""
    with Recommender.open(indexed, encoder=encoder) as rec:
        rec.record("zoe", "el-001")
        summary_text = rec.profile("zoe").summary(rec.config.profile)
        cache = cache_vectors(tmp_path / "cache", encoder, catalog, extra_texts=[summary_text])
        child = subprocess.Popen(
            [sys.executable, CHILD, str(cache), str(catalog_path(tmp_path, catalog)), str(indexed), "rebuild", "16"],
            stdout=subprocess.DEVNULL,
        )
        errors = empty = queries = 0
        versions = set()
        while True:
            done = child.poll() is not None
            try:
                rec.refresh()
                versions.add(rec.store.version)
                for results in (rec.similar("ki-001", k=5), rec.recommend("zoe", k=5), rec.popular(k=3)):
                    queries += 1
                    empty += not len(results)
            except Exception:  # noqa: BLE001 - counted, the test asserts there are none
                errors += 1
            if done:
                break
        assert child.returncode == 0
        rec.refresh()
        versions.add(rec.store.version)
    assert errors == 0 and empty == 0 and queries > 10
    assert versions == {"v0001", "v0002"}


def catalog_path(tmp_path, catalog):
    path = tmp_path / "catalog.parquet"
    if not path.exists():
        catalog.to_parquet(path, index=False)
    return path
