"""How a user is stored: `user_id`, `seen` and the state keys as payload fields (filtered, counted,
indexed), the rest of the profile as one JSON text (`schema.PROFILE`); users stored before that,
with every field apart, are still read and are rewritten in the new form by their next write."""

from __future__ import annotations

import json

from semrec.schema import PROFILE, USER_STATE_KEYS, USERS, pack_user, unpack_user
from semrec.store import point_id


def stored_payload(rec, uid: str) -> dict:
    return rec.store.retrieve(USERS, [point_id("user", uid)])[0].payload


def test_pack_and_unpack_are_inverse():
    fields = {"user_id": "u1", "seen": ["a", "b"], "history": [{"item_id": "a", "name": "Ä"}], "events": 2, "rev": "r"}
    packed = pack_user(fields)
    assert set(packed) == {"user_id", "seen", "rev", PROFILE}
    assert json.loads(packed[PROFILE]) == {"history": [{"item_id": "a", "name": "Ä"}], "events": 2}
    assert unpack_user(packed) == fields
    assert unpack_user(pack_user(unpack_user(packed))) == fields
    old = {"user_id": "u1", "seen": ["a"], "events": 1}  # stored before PROFILE existed
    assert unpack_user(old) == old


def test_a_recorded_user_is_stored_packed(shop):
    shop.record("ann", "ki-001", ts=1)
    shop.record("ann", "el-003", ts=2)
    payload = stored_payload(shop, "ann")
    assert set(payload) <= {"user_id", "seen", PROFILE, *USER_STATE_KEYS}
    assert payload["user_id"] == "ann" and sorted(payload["seen"]) == ["el-003", "ki-001"]
    profile = shop.profile("ann")
    assert [e.item_id for e in profile.history] == ["ki-001", "el-003"] and profile.events == 2
    assert json.loads(payload[PROFILE])["events"] == 2


def test_a_user_stored_with_every_field_apart_is_read_and_rewritten(shop, open_rec, backend, tmp_path):
    shop.record("ann", "ki-001", ts=1)
    shop.record("ann", "ki-002", ts=2)
    hit = shop.store.retrieve(USERS, [point_id("user", "ann")], with_vectors=True)[0]
    old_form = unpack_user(hit.payload)
    assert PROFILE not in old_form and "history" in old_form
    shop.store.upsert(USERS, [hit.id], hit.vector[None, :], [old_form])
    rec = shop
    if backend == "edge":  # the embedded store caches profiles: read them from a fresh open
        shop.close()
        rec = open_rec("edge")
    assert PROFILE not in stored_payload(rec, "ann")
    profile = rec.profile("ann")
    assert [e.item_id for e in profile.history] == ["ki-001", "ki-002"] and profile.seen == ["ki-001", "ki-002"]
    assert not {"ki-001", "ki-002"} & {r.item_id for r in rec.recommend("ann", k=20)}
    rec.record("ann", "el-003", ts=3)
    payload = stored_payload(rec, "ann")
    assert PROFILE in payload and "history" not in payload
    assert [e.item_id for e in rec.profile("ann").history] == ["ki-001", "ki-002", "el-003"]
    assert rec.profile("ann").events == 3


def test_negatives_survive_the_packed_form(shop):
    shop.record("bob", "el-001", ts=1)
    shop.record("bob", "el-002", kind="dislike", ts=2)
    assert shop.profile("bob").negatives["el-002"] == 1.0
    assert "el-002" not in {r.item_id for r in shop.recommend("bob", k=20)}
