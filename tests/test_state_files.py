"""Damaged and missing state files (CURRENT, semrec.json, reindex-state.sqlite): every open gives
the old state, the new state, or a clear error naming the file, never an empty store; and no
version is ever deleted while the pointer to the live one is missing or unreadable."""

import json
import random
import shutil
import sqlite3

import numpy as np
import pytest

from semrec import Recommender
from semrec.errors import ConfigError
from semrec.files import StateFileError, live_folder, read_pointer, read_store_meta, version_path
from semrec.reindex import reindex
from semrec.reindex.state import State, read_status
from semrec.reindex.versions import BUILD_MARKER, STATE_FILE, EdgeTarget
from semrec.store import EdgeStore, point_id

OLD_ITEMS, NEW_ITEMS, USERS = 10, 12, 3


def _fill(store: EdgeStore, items: int, users: int = 0) -> None:
    """Fill and close a store: `items` points (and `users`), 4-dim vectors, one payload index."""
    rng = np.random.default_rng(items)
    try:
        store.create_collection("items", 4, {"model": "test"})
        store.create_payload_index("items", "category", "keyword")
        ids = [point_id("item", f"i{i}") for i in range(items)]
        store.upsert("items", ids, rng.normal(size=(items, 4)), [{"item_id": f"i{i}", "category": "a"} for i in range(items)])
        if users:
            store.create_collection("users", 4, {"model": "test"})
            ids = [point_id("user", f"u{i}") for i in range(users)]
            store.upsert("users", ids, rng.normal(size=(users, 4)), [{"user_id": f"u{i}"} for i in range(users)])
        store.flush()
    finally:
        store.close()


def _complete(target: EdgeTarget, version: str, items: int) -> None:
    """A version as a finished blue-green build leaves it (state "complete"), not yet switched to."""
    _fill(target.open(version), items, USERS)
    state = State(target.state_path(version))
    state.set_meta("status", "complete")
    state.close()


@pytest.fixture
def versioned(tmp_path):
    """v0001 (10 items) then v0002 (12 items) made live: CURRENT = {v0002, previous v0001}."""
    target = EdgeTarget(tmp_path / "store")
    for version, items in (("v0001", OLD_ITEMS), ("v0002", NEW_ITEMS)):
        _complete(target, version, items)
        target.switch(version)
    return target.root


@pytest.fixture
def plain(tmp_path):
    """A store made before versioning: semrec.json and shards in the folder itself."""
    folder = tmp_path / "plain"
    _fill(EdgeStore(folder), OLD_ITEMS, USERS)
    return folder


def _item_count(folder) -> int:
    store = EdgeStore(folder)
    try:
        return store.count("items") if store.has_collection("items") else 0
    finally:
        store.close()


def _variants(original: bytes, seed: int = 0):
    """The original truncated at every offset, then garbled: random bytes, {}, wrong types."""
    for offset in range(len(original)):
        yield f"truncated at {offset}", original[:offset]
    rng = random.Random(seed)
    for n in range(8):
        yield f"random bytes #{n}", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    flipped = bytearray(original)
    for _ in range(5):
        flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    yield "bytes flipped", bytes(flipped)
    yield "zeros", b"\0" * len(original)
    for value in ({}, [], "v0001", 1, None, True):
        yield f"json {value!r}", json.dumps(value).encode()


def _pointers():
    """CURRENT values with wrong types or ids that would lead out of the store."""
    for value in (
        {"version": 1},
        {"version": None},
        {"version": ["v0002"]},
        {"version": {"id": "v0002"}},
        {"version": "v0002", "previous": 5},
        {"version": "v0002", "previous": "../../elsewhere"},
        {"version": "../../elsewhere"},
        {"version": "../versions/v0002"},
        {"version": "v0002/../../.."},
        {"version": "/tmp"},
        {"version": ".."},
        {"version": ""},
        {"version": "v1"},
        {"version": "v0009"},  # a valid id, but no such folder
        {"version": "."},  # the folder itself, which holds no store
        {"previous": "v0001"},
    ):
        yield f"json {value!r}", json.dumps(value).encode()


def _opens_whole_or_fails_clearly(folder, name: str, label: str, counts: set[int]) -> str:
    try:
        count = _item_count(folder)
    except StateFileError as exc:
        assert name in str(exc), (label, str(exc))
        return "error"
    assert count in counts, f"{label}: opened with {count} items, expected one of {counts}"
    return "opened"


# CURRENT -------------------------------------------------------------------------------------
def test_damaged_current_is_a_clear_error_never_another_store(versioned):
    pointer = versioned / "CURRENT"
    original = pointer.read_bytes()
    outcomes = {}
    for label, data in [*_variants(original), *_pointers()]:
        pointer.write_bytes(data)
        outcomes[label] = _opens_whole_or_fails_clearly(versioned, "CURRENT", label, {OLD_ITEMS, NEW_ITEMS})
        with pytest.raises(StateFileError, match="CURRENT"):
            EdgeTarget(versioned).live()  # and no job starts on a damaged pointer
    assert set(outcomes.values()) == {"error"}, outcomes
    pointer.write_bytes(original)
    assert _item_count(versioned) == NEW_ITEMS
    assert sorted(p.name for p in (versioned / "versions").iterdir()) == ["v0001", "v0002"]
    assert not list(versioned.glob(f"versions/*/{BUILD_MARKER}"))  # both were switched to


def test_current_errors_name_the_problem_and_the_repair(versioned):
    pointer = versioned / "CURRENT"
    cases = {
        b'{"version": "v00': r"CURRENT' is not valid JSON .*truncated",
        b"": r"CURRENT' is empty",
        b"\xff\xfe\x00garbage": r"CURRENT' is not UTF-8",
        b"{}": r"CURRENT' has no \"version\" key",
        b'{"version": 2}': r"CURRENT' has 'version' = 2 \(int\); expected a str",
        b'{"version": "../../elsewhere"}': r"'\.\./\.\./elsewhere', which is not a version id",
        b"[1]": r"CURRENT' holds a JSON list",
    }
    for data, message in cases.items():
        pointer.write_bytes(data)
        with pytest.raises(StateFileError, match=message) as error:
            read_pointer(versioned)
        assert 'write {"version": "<one of: v0001, v0002>"}' in str(error.value)
        assert "backup" in str(error.value)


def test_version_ids_never_leave_the_store(tmp_path, versioned):
    for bad in ("../../elsewhere", "..", "v0001/../..", "/etc", "x"):
        with pytest.raises(ConfigError, match="not valid"):
            version_path(versioned, bad)
    outside = tmp_path / "outside"
    outside.mkdir()
    (versioned / "versions" / "v0007").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside"):
        version_path(versioned, "v0007")
    (versioned / "versions" / "v0007").unlink()
    assert version_path(versioned, "v0002") == versioned / "versions" / "v0002"


def test_missing_current_is_an_error_and_every_version_is_kept(versioned):
    (versioned / "CURRENT").unlink()
    message = r"CURRENT' is missing.*\(v0001, v0002\).*write \{\"version\": \"<one of: v0001, v0002>\"\}"
    target = EdgeTarget(versioned)
    for call in (target.live, target.cleanup, target.rollback):
        with pytest.raises(StateFileError, match=message):
            call()
    with pytest.raises(StateFileError, match=message):
        EdgeStore(versioned)
    assert sorted(p.name for p in (versioned / "versions").iterdir()) == ["v0001", "v0002"]
    for version, items in (("v0001", OLD_ITEMS), ("v0002", NEW_ITEMS)):
        assert _item_count(versioned / "versions" / version) == items
    # the repair the message gives
    (versioned / "CURRENT").write_text('{"version": "v0002"}')
    assert _item_count(versioned) == NEW_ITEMS


def test_cleanup_deletes_nothing_when_current_names_no_complete_version(versioned):
    target = EdgeTarget(versioned)
    _complete(target, "v0003", 5)
    (versioned / "CURRENT").write_text('{"version": "v0009", "previous": "v0002"}')
    with pytest.raises(StateFileError, match="CURRENT' names version 'v0009'.*missing"):
        target.cleanup()
    assert target.versions() == ["v0001", "v0002", "v0003"]
    (versioned / "CURRENT").write_text('{"version": "v0002", "previous": "v0001"}')
    assert target.cleanup() == ["v0003"]  # with a sound pointer, unused versions go as before


def test_an_unswitched_build_is_not_taken_for_a_lost_pointer(tmp_path):
    """Before its first switch a store has versions but no CURRENT: the job resumes it (live() is
    None); a reader gets a clear error rather than an empty store."""
    target = EdgeTarget(tmp_path / "new")
    assert target.live() is None  # a brand-new folder is still a new store
    folder = version_path(target.root, "v0001")
    folder.mkdir(parents=True)  # killed right after creating the folder
    assert target.live() is None
    _fill(EdgeStore(folder), 4)  # a build from before BUILD_MARKER: its state says "building"
    state = State(target.state_path("v0001"))
    state.set_meta("status", "building")
    state.close()
    assert target.live() is None and read_status(target.state_path("v0001")) == "building"
    assert target.cleanup() == [] and target.versions() == ["v0001"]
    with pytest.raises(StateFileError, match=r"CURRENT' is missing.*\(v0001\)"):
        EdgeStore(target.root)
    state = State(target.state_path("v0001"))
    state.set_meta("status", "complete")  # finished, no marker: it may have been live
    state.close()
    with pytest.raises(StateFileError, match="CURRENT' is missing"):
        target.live()
    shutil.rmtree(folder)
    _complete(target, "v0001", 4)  # opened by the job: marked until the switch
    assert (folder / BUILD_MARKER).exists() and target.live() is None
    target.switch("v0001")
    assert not (folder / BUILD_MARKER).exists() and target.live() == "v0001"
    assert _item_count(target.root) == 4


def test_switch_refuses_an_incomplete_version(tmp_path):
    target = EdgeTarget(tmp_path / "s")
    version_path(target.root, "v0001").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no semrec.json"):
        target.switch("v0001")
    assert not (target.root / "CURRENT").exists()


def test_a_new_folder_is_still_a_new_store(tmp_path):
    assert live_folder(tmp_path / "fresh") == (None, tmp_path / "fresh")
    assert _item_count(tmp_path / "fresh") == 0
    assert read_store_meta(tmp_path / "fresh") == {"collections": {}}


# semrec.json ---------------------------------------------------------------------------------
def _meta_values():
    entry = {"dim": 4, "metadata": {}, "indexes": {}}
    for value in (
        {"collections": {}},  # names nothing while shards exist: as good as missing
        {"collections": []},
        {"collections": None},
        {"collections": {"items": []}},
        {"collections": {"items": {**entry, "dim": "4"}}},
        {"collections": {"items": {**entry, "dim": True}}},
        {"collections": {"items": {**entry, "dim": 0}}},
        {"collections": {"items": {**entry, "metadata": "x"}}},
        {"collections": {"items": {**entry, "indexes": ["category"]}}},
        {"collections": {"items": {**entry, "indexes": {"category": 1}}}},
        {"collections": {"items": {"dim": 4, "metadata": {}}}},
        {"collections": {"../../elsewhere": entry}},
        {"collections": {"/tmp": entry}},
        {"items": entry},
    ):
        yield f"json {value!r}", json.dumps(value).encode()


@pytest.mark.parametrize("where", ["plain", "version"])
def test_damaged_semrec_json_is_a_clear_error_never_an_empty_store(request, where):
    root = request.getfixturevalue("plain" if where == "plain" else "versioned")
    meta = root / "semrec.json" if where == "plain" else root / "versions" / "v0002" / "semrec.json"
    expected = OLD_ITEMS if where == "plain" else NEW_ITEMS
    original = meta.read_bytes()
    outcomes = {}
    for label, data in [*_variants(original, seed=1), *_meta_values()]:
        meta.write_bytes(data)
        outcomes[label] = _opens_whole_or_fails_clearly(root, "semrec.json", label, {expected})
        with pytest.raises(StateFileError, match="semrec.json"):
            read_store_meta(meta.parent)
    assert set(outcomes.values()) == {"error"}, outcomes
    meta.write_bytes(original)
    assert _item_count(root) == expected


def test_semrec_json_errors_name_the_problem_and_the_repair(plain):
    meta = plain / "semrec.json"
    entry = {"dim": 4, "metadata": {}, "indexes": {}}
    cases = {
        b'{"collections": {"it': r"semrec.json' is not valid JSON",
        b"{}": r"semrec.json' has no \"collections\" key",
        json.dumps({"collections": {"items": {**entry, "dim": "4"}}}).encode(): r"'dim' = '4'; expected int",
        json.dumps({"collections": {"../x": entry}}).encode(): r"collection '\.\./x', which is not a folder name",
    }
    for data, message in cases.items():
        meta.write_bytes(data)
        with pytest.raises(StateFileError, match=message) as error:
            read_store_meta(plain)
        assert "cannot be rebuilt safely" in str(error.value) and "restore it from a backup" in str(error.value)
        assert "re-index the catalog into a new folder" in str(error.value)


def test_missing_semrec_json_with_shards_is_an_error(plain, versioned):
    (plain / "semrec.json").unlink()
    message = r"semrec.json' is missing, but .* holds collection data \(items, users\)"
    with pytest.raises(StateFileError, match=message):
        read_store_meta(plain)
    with pytest.raises(StateFileError, match=message):
        EdgeStore(plain)
    with pytest.raises(StateFileError, match=message):
        EdgeTarget(plain).live()
    assert (plain / "items").is_dir() and (plain / "users").is_dir()
    (versioned / "versions" / "v0002" / "semrec.json").unlink()
    with pytest.raises(StateFileError, match=r"v0002/semrec.json' is missing"):
        EdgeStore(versioned)
    with pytest.raises(StateFileError, match=r"v0002/semrec.json' is missing"):
        EdgeTarget(versioned).collection_metadata("v0002")


# reindex-state.sqlite ------------------------------------------------------------------------
@pytest.fixture
def state_file(tmp_path):
    path = tmp_path / "v0001" / STATE_FILE
    state = State(path)
    state.set_meta("status", "complete")
    state.set_meta("model", {"weights": "ab12"})
    state.commit([_row(i) for i in range(400)])
    state.close()
    return path


def _row(i: int):
    from semrec.reindex.state import Row

    return Row(f"item-{i:04d}", f"text-{i}", f"payload-{i}")


def test_damaged_state_file_is_a_clear_error_or_the_same_rows(state_file):
    original = state_file.read_bytes()
    expected = {_row(i).item_id: _row(i) for i in range(400)}
    other = state_file.with_name("other.sqlite")
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE items (id INTEGER)")
    db.commit()
    db.close()
    page = 4096
    variants = [(f"truncated at {n}", original[:n]) for n in (*range(1, 120, 7), *range(page, len(original), page // 2))]
    variants += [(label, data) for label, data in _variants(original[:64], seed=2) if not label.startswith("truncated")]
    zeroed = bytearray(original)
    zeroed[page : 2 * page] = b"\0" * page
    variants += [("a page zeroed", bytes(zeroed)), ("another sqlite file", other.read_bytes())]
    outcomes = {}
    for label, data in variants:
        for extra in ("-wal", "-shm"):
            state_file.with_name(state_file.name + extra).unlink(missing_ok=True)
        state_file.write_bytes(data)
        try:
            state = State(state_file)
            try:
                rows, status = state.rows(), state.meta("status")
            finally:
                state.close()
        except StateFileError as exc:
            assert STATE_FILE in str(exc) and "delete it" in str(exc), (label, str(exc))
            outcomes[label] = "error"
            continue
        # an empty file is a new state (the job then rebuilds it from the store); else the same rows
        assert (rows, status) in ((expected, "complete"), ({}, None)), label
        outcomes[label] = "same" if rows else "new"
    assert outcomes["random bytes #0"] == outcomes["another sqlite file"] == outcomes["a page zeroed"] == "error"
    assert other.read_bytes() == state_file.read_bytes()  # nothing is written to a file it refuses
    state_file.write_bytes(original[:3000])
    with pytest.raises(StateFileError, match=f"{STATE_FILE}' is damaged"):
        read_status(state_file)


# the re-index job, end to end (real model) ----------------------------------------------------
@pytest.fixture
def indexed(tmp_path, catalog, encoder):
    store = tmp_path / "store"
    reindex(catalog, store, encoder=encoder, batch_size=128)
    with Recommender.open(store, encoder=encoder) as rec:
        rec.record("ann", "el-001")
    return store


def test_reindex_full_without_current_deletes_nothing(indexed, catalog, encoder):
    (indexed / "CURRENT").unlink()
    with pytest.raises(StateFileError, match=r"CURRENT' is missing.*\(v0001\)"):
        Recommender.open(indexed, encoder=encoder)
    with pytest.raises(StateFileError, match=r"CURRENT' is missing.*\(v0001\)"):
        reindex(catalog, indexed, encoder=encoder, mode="full")
    assert [p.name for p in (indexed / "versions").iterdir()] == ["v0001"]
    (indexed / "CURRENT").write_text('{"version": "v0001"}')  # the repair the message gives
    with Recommender.open(indexed, encoder=encoder) as rec:
        assert rec.n_items == len(catalog) and rec.profile("ann").seen == ["el-001"]


def test_reindex_with_a_damaged_state_file_stops_and_deleting_it_repairs(indexed, catalog, encoder):
    state = indexed / "versions" / "v0001" / STATE_FILE
    state.write_bytes(b"this is not a database" * 50)
    with pytest.raises(StateFileError, match=f"{STATE_FILE}' is damaged.*delete it"):
        reindex(catalog, indexed, encoder=encoder)
    with Recommender.open(indexed, encoder=encoder) as rec:  # the store is untouched and not held
        assert rec.n_items == len(catalog)
    for name in (STATE_FILE, f"{STATE_FILE}-wal", f"{STATE_FILE}-shm"):
        (indexed / "versions" / "v0001" / name).unlink(missing_ok=True)
    encoder.encoded = 0
    again = reindex(catalog, indexed, encoder=encoder)
    assert (again.encoded, again.upserted, again.unchanged) == (0, 0, len(catalog)) and encoder.encoded == 0
    with Recommender.open(indexed, encoder=encoder) as rec:
        assert rec.n_items == len(catalog) and rec.profile("ann").seen == ["el-001"]
