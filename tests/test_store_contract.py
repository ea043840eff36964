"""One contract for every VectorStore backend: Qdrant Edge (embedded) and qdrant-client (local mode)."""

import numpy as np
import pytest

from semrec.errors import StoreLockedError
from semrec.store import EdgeStore, QdrantStore, parse_filter, point_id
from semrec.store.base import Filter

DIM = 4


def _unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


POINTS = {
    "a": (_unit(1, 0, 0, 0), {"item_id": "a", "cat": "x", "price": 5.0, "tags": ["red", "big"], "popularity": 3.0}),
    "b": (_unit(1, 1, 0, 0), {"item_id": "b", "cat": "x", "price": 15.0, "tags": ["blue"], "popularity": 9.0}),
    "c": (_unit(0, 1, 0, 0), {"item_id": "c", "cat": "y", "price": 25.0, "tags": ["red"], "popularity": 1.0}),
    "d": (_unit(0, 0, 1, 0), {"item_id": "d", "cat": "y", "price": 35.0, "tags": [], "popularity": 5.0}),
}


def _make(kind, path):
    return EdgeStore(path) if kind == "edge" else QdrantStore(str(path), prefix="t")


@pytest.fixture(params=["edge", "qdrant"])
def store(request, tmp_path):
    store = _make(request.param, tmp_path / "s")
    store.create_collection("items", DIM, {"model": {"name": "m"}})
    for field, kind in (("cat", "keyword"), ("price", "float"), ("tags", "keyword"), ("popularity", "float")):
        store.create_payload_index("items", field, kind)
    ids = [point_id("item", k) for k in POINTS]
    store.upsert("items", ids, np.stack([v for v, _ in POINTS.values()]), [p for _, p in POINTS.values()])
    store.finish_bulk_load("items")
    yield store
    store.close()


def _ids(hits):
    return [h.payload["item_id"] for h in hits]


def test_collections_and_metadata(store):
    assert store.has_collection("items") and not store.has_collection("users")
    assert store.collection_metadata("items")["model"] == {"name": "m"}
    assert {"cat", "price", "tags", "popularity"} <= store.payload_indexes("items")
    assert store.count("items") == 4


def test_exact_query_ranks_by_dot_product(store):
    hits = store.query("items", _unit(1, 0.2, 0, 0), 3, exact=True, with_vectors=True)
    assert _ids(hits) == ["a", "b", "c"]
    assert hits[0].score == pytest.approx(float(_unit(1, 0.2, 0, 0) @ POINTS["a"][0]), abs=1e-5)
    assert hits[0].vector.shape == (DIM,)


def test_filters_and_exclusions(store):
    q = _unit(1, 0.2, 0, 0)
    assert _ids(store.query("items", q, 4, parse_filter({"cat": "y"}))) == ["c", "d"]
    assert _ids(store.query("items", q, 4, parse_filter({"tags": ["red"]}))) == ["a", "c"]
    assert _ids(store.query("items", q, 4, parse_filter({"price": {"gte": 10, "lt": 30}}))) == ["b", "c"]
    flt = Filter(exclude_ids=[point_id("item", "a")])
    assert _ids(store.query("items", q, 2, flt)) == ["b", "c"]


def test_retrieve_keeps_order_and_skips_missing(store):
    ids = [point_id("item", k) for k in ("c", "zzz", "a")]
    assert _ids(store.retrieve("items", ids)) == ["c", "a"]
    some = store.retrieve("items", ids, with_payload=["item_id", "price"])
    assert [h.payload for h in some] == [{"item_id": "c", "price": 25.0}, {"item_id": "a", "price": 5.0}]
    assert [h.payload for h in store.retrieve("items", ids, with_payload=False)] == [{}, {}]


def test_top_by_payload_and_set_payload(store):
    assert _ids(store.top_by("items", "popularity", 2)) == ["b", "d"]
    store.set_payload("items", [point_id("item", "c")], {"popularity": 100.0})
    assert _ids(store.top_by("items", "popularity", 2, parse_filter({"cat": "y"}))) == ["c", "d"]


def test_delete_and_scroll(store):
    store.delete("items", [point_id("item", "b")])
    assert store.count("items") == 3
    assert sorted(_ids(store.scroll("items", batch=2))) == ["a", "c", "d"]


def test_reopen_keeps_everything(request, tmp_path):
    for kind in ("edge", "qdrant"):
        path = tmp_path / kind
        store = _make(kind, path)
        store.create_collection("items", DIM, {"model": {"name": "m"}})
        store.upsert("items", [point_id("item", "a")], POINTS["a"][0][None], [POINTS["a"][1]])
        store.close()
        again = _make(kind, path)
        assert again.count("items") == 1
        assert again.collection_metadata("items")["model"] == {"name": "m"}
        assert _ids(again.query("items", _unit(1, 0, 0, 0), 1)) == ["a"]
        again.close()


def test_edge_folder_is_locked_while_open(tmp_path):
    store = EdgeStore(tmp_path / "s")
    with pytest.raises(StoreLockedError, match="already open.*one process at a time"):
        EdgeStore(tmp_path / "s")
    store.close()
    EdgeStore(tmp_path / "s").close()


def test_bool_fields_filter_and_read_back_as_bools(store):
    store.create_payload_index("items", "in_stock", "bool")
    ids = [point_id("item", k) for k in ("s1", "s2")]
    payloads = [{"item_id": "s1", "in_stock": True}, {"item_id": "s2", "in_stock": False}]
    store.upsert("items", ids, np.stack([_unit(0, 0, 0, 1)] * 2), payloads)
    hits = store.query("items", _unit(0, 0, 0, 1), 5, parse_filter({"in_stock": True}))
    assert _ids(hits) == ["s1"] and hits[0].payload["in_stock"] is True
    assert store.retrieve("items", ids[1:])[0].payload["in_stock"] is False


def test_edge_reuses_an_exclusion_only_for_the_same_ids():
    """Edge keeps recently built id exclusions (parsing UUIDs is its costliest filter step);
    a different id list, even by one id, builds its own."""
    from semrec.store.edge import ExclusionCache

    cache = ExclusionCache(size=2)
    a, b, c = (point_id("item", x) for x in "abc")
    first = cache([a, b])
    assert cache([a, b]) is first
    assert cache([a, b, c]) is not first and cache([a]) is not first
    assert cache([a, b]) is not first  # evicted: at most `size` kept
