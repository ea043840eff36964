"""The HTTP service with FastAPI's test client: every endpoint, every error path, the OpenAPI
schema, and known answers (an event posted changes the very next recommendation)."""

from __future__ import annotations

import json
import os
import random
import threading
from collections import defaultdict

import pytest
from fastapi.testclient import TestClient

from semrec.service import ServiceSettings, create_app


@pytest.fixture
def client(shop):
    with TestClient(create_app(recommender=shop)) as test_client:
        yield test_client


def test_health_ready_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["items"] == 256
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/events", "/users/{user_id}", "/users/{user_id}/recommendations", "/items/{item_id}/similar",
            "/search", "/items", "/items/{item_id}", "/healthz", "/readyz", "/metrics"} <= paths
    assert set(schema["paths"]["/items/{item_id}"]) == {"delete"}


def test_an_event_changes_the_very_next_recommendation(client):
    before = client.get("/users/kim/recommendations", params={"k": 5}).json()["results"]
    answer = client.post("/events", json={"events": [
        {"user_id": "kim", "item_id": i, "kind": "view", "ts": 1_700_000_000 + n}
        for n, i in enumerate(["ki-001", "ki-002", "ki-003", "ki-004"])
    ]}).json()
    assert (answer["recorded"], answer["duplicate"], answer["rejected"]) == (4, 0, 0)
    after = client.get("/users/kim/recommendations", params={"k": 5}).json()["results"]
    assert [r["item_id"] for r in after] != [r["item_id"] for r in before]
    assert all(r["category"].startswith("Kitchen") for r in after)  # four kitchen views: kitchen items
    assert not {"ki-001", "ki-002", "ki-003", "ki-004"} & {r["item_id"] for r in after}  # seen ones excluded
    assert after[0]["reason"] and "text" not in after[0]["fields"] and "price" in after[0]["fields"]
    profile = client.get("/users/kim").json()
    assert profile["seen"] == ["ki-001", "ki-002", "ki-003", "ki-004"] and profile["events"] == 4


def test_events_one_list_and_batch_with_per_event_outcomes(client):
    one = client.post("/events", json={"user_id": "u1", "item_id": "el-001", "ts": 1_700_000_000}).json()
    assert one["recorded"] == 1 and one["results"] == [{"status": "recorded"}]
    answer = client.post("/events", json=[
        {"user_id": "u1", "item_id": "el-001", "ts": 1_700_000_000},          # the same again
        {"user_id": "u1", "item_id": "nope", "ts": 1_700_000_001},            # unknown item
        {"user_id": "u1", "item_id": "el-002", "ts": "yesterday"},            # bad time
        {"user_id": "u1", "item_id": "el-003", "weight": -1},                 # bad weight
        {"user_id": "u2", "item_id": "el-003"},
    ]).json()
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["duplicate", "rejected", "rejected", "rejected", "recorded"]
    assert "not in the catalog" in answer["results"][1]["reason"]
    assert "is not a time" in answer["results"][2]["reason"]
    assert "weight" in answer["results"][3]["reason"]


def test_items_put_similar_search_and_delete(client):
    answer = client.put("/items", json={"items": [
        {"item_id": "new-1", "name": "Titanium Camping Kettle", "category": "Outdoors", "tags": "camping|kettle", "price": 39.0},
        {"item_id": "new-2", "name": ""},
    ]}).json()
    assert answer["indexed"] == 1 and len(answer["rejected"]) == 1 and "name" in answer["rejected"][0]["reason"]
    found = client.get("/search", params={"q": "camping kettle", "k": 3}).json()["results"]
    assert found[0]["item_id"] == "new-1"
    similar = client.get("/items/el-001/similar", params={"k": 3, "filter": json.dumps({"category": "Electronics"})}).json()
    assert len(similar["results"]) == 3 and "el-001" not in [r["item_id"] for r in similar["results"]]
    assert all(r["category"].startswith("Electronics") for r in similar["results"])
    assert client.delete("/items/new-1").json() == {"deleted": "new-1"}
    assert "new-1" not in [r["item_id"] for r in client.get("/search", params={"q": "camping kettle", "k": 3}).json()["results"]]
    assert client.delete("/items/new-1").status_code == 404


def test_erasure(client):
    client.post("/events", json={"user_id": "gone@example.com", "item_id": "el-001"})
    assert client.delete("/users/gone@example.com").json() == {"erased": "gone@example.com"}
    assert client.get("/users/gone@example.com").status_code == 404
    assert client.delete("/users/gone@example.com").status_code == 404


@pytest.mark.parametrize(
    "method, path, params, status, needle",
    [
        ("get", "/users/nobody", None, 404, "has no profile"),
        ("get", "/items/nope/similar", None, 404, "'nope' is not in the catalog"),
        ("get", "/users/u/recommendations", {"k": 0}, 422, "k"),
        ("get", "/users/u/recommendations", {"k": 5000}, 422, "k"),
        ("get", "/users/u/recommendations", {"filter": "{bad"}, 422, "is not JSON"),
        ("get", "/users/u/recommendations", {"filter": "[1]"}, 422, "JSON object"),
        ("get", "/users/u/recommendations", {"filter": '{"price": {"lt": NaN}}'}, 422, "NaN"),
        ("get", "/users/u/recommendations", {"filter": '{"colour": "red"}'}, 422, "not a catalog field"),
        ("get", "/users/u/recommendations", {"filter": '{"price": {"lt": "cheap"}}'}, 422, "price"),
        ("get", "/search", {"q": "x" * 1001}, 422, "q"),
        ("get", "/search", None, 422, "q"),
    ],
)
def test_error_paths_are_clear_json_without_tracebacks(client, method, path, params, status, needle):
    response = getattr(client, method)(path, params=params)
    body = response.json()
    assert response.status_code == status, body
    assert needle in json.dumps(body), body
    assert "Traceback" not in response.text and body["request_id"] == response.headers["x-request-id"]


def test_malformed_bodies_are_422_naming_the_field(client):
    response = client.post("/events", json={"events": [{"user_id": "u", "itemid": "el-001"}]})
    assert response.status_code == 422 and "item_id" in response.text
    assert client.put("/items", json={"items": []}).status_code == 422
    assert client.post("/events", content=b"not json", headers={"content-type": "application/json"}).status_code == 422
    # JSON may escape a lone surrogate, which no valid id holds: rejected per event, others kept
    body = b'[{"user_id": "u\\ud800", "item_id": "el-001"}, {"user_id": "ok", "item_id": "el-001"}]'
    answer = client.post("/events", content=body, headers={"content-type": "application/json"}).json()
    assert [r["status"] for r in answer["results"]] == ["rejected", "recorded"]


def test_unexpected_errors_are_500_without_details(shop, monkeypatch):
    with TestClient(create_app(recommender=shop), raise_server_exceptions=False) as client:
        monkeypatch.setattr(shop, "recommend", lambda *a, **k: 1 / 0)
        response = client.get("/users/u/recommendations")
    assert response.status_code == 500 and response.json()["error"] == "internal"
    assert "ZeroDivisionError" not in response.text and "Traceback" not in response.text


def test_api_key(shop):
    app = create_app(ServiceSettings(api_key="s3cret"), recommender=shop)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        assert client.get("/users/u/recommendations").status_code == 401
        assert client.get("/users/u/recommendations", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/users/u/recommendations", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_metrics_and_access_log(client, caplog):
    client.post("/events", json={"user_id": "m", "item_id": "el-001"})
    with caplog.at_level("INFO", logger="semrec.access"):
        client.get("/users/m/recommendations", headers={"X-Request-ID": "req-42"})
    line = json.loads(caplog.records[-1].getMessage())
    assert line["request_id"] == "req-42" and line["route"] == "/users/{user_id}/recommendations" and line["status"] == 200
    text = client.get("/metrics").text
    assert 'semrec_requests_total{method="POST",route="/events",status="200"} 1.0' in text
    assert "semrec_request_seconds_bucket" in text and "semrec_events_recorded_total 1.0" in text


def test_eight_threads_of_mixed_requests(client, catalog):
    """8 threads x 200 requests (events for overlapping users, reads): 0 errors, and each user's
    stored `seen` equals the items sent for them, event counts equal the events sent."""
    items = list(catalog.item_id)
    sent: dict[str, set] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    errors: list[str] = []

    def worker(w: int) -> None:
        rnd = random.Random(w)
        for n in range(200):
            uid = f"user-{rnd.randrange(6)}"
            try:
                if n % 3:
                    response = client.get(f"/users/{uid}/recommendations", params={"k": 5})
                    ok = response.status_code == 200
                else:
                    event = {"user_id": uid, "item_id": rnd.choice(items), "ts": 1_700_000_000 + w * 10_000 + n}
                    response = client.post("/events", json=event)
                    ok = response.status_code == 200 and response.json()["recorded"] == 1
                    if ok:
                        with lock:
                            sent[uid].add(event["item_id"])
                            counts[uid] += 1
                if not ok:
                    errors.append(f"{response.status_code} {response.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for uid, items_sent in sent.items():
        profile = client.get(f"/users/{uid}").json()
        assert set(profile["seen"]) == items_sent and profile["events"] == counts[uid]


def test_negatives_and_rules_over_http(client):
    client.post("/events", json={"user_id": "n", "item_id": "el-001", "ts": 1_700_000_000})
    top = client.get("/users/n/recommendations", params={"k": 3}).json()["results"]
    first = top[0]["item_id"]
    pushed = client.get("/users/n/recommendations", params={"k": 3, "negative": [first]}).json()["results"]
    assert first not in [r["item_id"] for r in pushed]
    pinned = client.get("/users/n/recommendations", params={"k": 3, "rules": json.dumps({"pin": ["ki-001"]})}).json()
    assert pinned["results"][0]["item_id"] == "ki-001" and pinned["results"][0]["score_kind"] == "pinned"
    similar = client.get("/items/el-001/similar", params={"k": 3, "negative": ["el-002"]}).json()["results"]
    assert "el-002" not in [r["item_id"] for r in similar]
    bad = client.get("/users/n/recommendations", params={"rules": json.dumps({"boost": {"name": 1}})})
    assert bad.status_code == 422 and "rules.boost on 'name'" in bad.json()["message"]
    assert client.get("/search", params={"q": "kettle", "rules": "{oops"}).status_code == 422


def test_the_service_leaves_a_core_for_requests_when_it_encodes_in_the_background(monkeypatch):
    from semrec.service import model_threads

    monkeypatch.delenv("SEMREC_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert model_threads(ServiceSettings(store="s")) == 3  # background updates: all cores but one
    assert model_threads(ServiceSettings(store="s", background_updates=False)) is None  # every core
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert model_threads(ServiceSettings(store="s")) == 1  # never zero
    monkeypatch.setenv("SEMREC_NUM_THREADS", "2")
    assert model_threads(ServiceSettings(store="s")) == 2  # an explicit setting wins


def test_the_service_follows_a_rebuild_made_by_another_process(tmp_path, catalog, encoder):
    """`semrec reindex --rebuild` in another process switches the embedded store; the service
    follows it by itself, and every event posted before, during and after the rebuild is in the
    version it then serves."""
    import time

    from semrec import Recommender, RecommenderConfig
    from semrec.reindex import reindex

    from test_rebuild_and_erasure import start_rebuild

    store = tmp_path / "store"
    reindex(catalog, store, encoder=encoder, batch_size=64)
    items = list(catalog.item_id)
    sent: dict[str, set[str]] = defaultdict(set)

    def post(user: str, item: str, ts: float) -> None:
        answer = client.post("/events", json={"user_id": user, "item_id": item, "ts": ts}).json()
        assert answer["recorded"] == 1, answer
        sent[user].add(item)

    config = RecommenderConfig(background_updates=True)
    with Recommender.open(store, encoder=encoder, config=config) as rec, \
            TestClient(create_app(ServiceSettings(refresh_every=0.05), recommender=rec)) as client:
        assert client.get("/readyz").json()["version"] == "v0001"
        child = start_rebuild(tmp_path, encoder, catalog, store, delay=0.15)
        n = 0
        while child.poll() is None or n < 10:
            post(f"u{n % 7}", items[(n * 31) % len(items)], 1_700_000_000 + n)
            n += 1
        assert child.returncode == 0
        for m in range(5):  # right after the switch, before or while the service follows it
            post(f"late{m}", items[m], 1_750_000_000 + m)
        for _ in range(1200):
            if client.get("/readyz").json()["version"] == "v0002":
                break
            time.sleep(0.05)
        assert client.get("/readyz").json()["version"] == "v0002"
        for user, items_sent in sent.items():
            assert items_sent <= set(client.get(f"/users/{user}").json()["seen"]), user
            shown = {r["item_id"] for r in client.get(f"/users/{user}/recommendations", params={"k": 10}).json()["results"]}
            assert not items_sent & shown, user
        assert sum(len(s) for s in sent.values()) > 15
