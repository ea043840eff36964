"""Hostile input: NaN, inf, lone surrogates, far-future times, oversized and odd values.

Each bad value raises `ConfigError` naming it (filters, events, search text) or rejects its own
catalog/events row with a reason while the good rows go through; nothing reaches the engine
that the engine cannot take (its errors are raw TypeErrors, or Rust panics that pass
`except Exception`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import statistics
import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semrec import CatalogError, ConfigError, load_catalog, write_rejects
from semrec.catalog import MAX_TAGS, Reject, canonical_id, clean_query_text, parse_tags
from semrec.profiles import (
    FUTURE_TOLERANCE_S,
    MAX_WEIGHT,
    events_from_frame,
    make_event,
    to_timestamp,
)
from semrec.store.base import parse_filter

NOW = 1_800_000_000.0  # a fixed "now" for the time rules
SURROGATE = "\ud800"


def _frame(rows: list[dict]) -> pd.DataFrame:
    # object dtype: pandas' default string inference refuses lone surrogates itself
    return pd.DataFrame(rows, dtype=object)


# filters -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, message",
    [
        ({"price": {"lt": float("nan")}}, r"filter on 'price' has range value nan for 'lt'; expected a finite number or an ISO date, e\.g\. \{'price': \{'lt': 50\}\}"),
        ({"price": {"lt": float("inf")}}, r"range value inf for 'lt'; expected a finite number"),
        ({"price": {"gte": -math.inf}}, r"range value -inf for 'gte'"),
        ({"price": {"lt": "cheap"}}, r"filter on 'price' has range value 'cheap' for 'lt'; expected a finite number or an ISO date, e\.g\. \{'price': \{'lt': 50\}\}"),
        ({"price": {"lt": True}}, r"range value True for 'lt'; expected a finite number"),
        ({"price": {"lt": None}}, r"range value None for 'lt'"),
        ({"price": {"lt": 10**5000}}, r"range value <int> for 'lt'"),
        ({"price": {"below": 5}}, r"range keys \['below'\]; expected some of"),
        ({"price": {1: 5, "lt": 3}}, r"range keys \['1', 'lt'\]"),
        ({"brand": "Acme" + SURROGATE}, r"filter on 'brand' has value 'Acme\\ud800' with a lone surrogate '\\ud800' at character 4"),
        ({"brand": ["ok", SURROGATE]}, r"has list value '\\ud800' with a lone surrogate"),
        ({"": "x"}, r"filter field '' is not a field name; expected a catalog field"),
        ({"   ": "x"}, r"filter field '   ' is not a field name"),
        ({SURROGATE: "x"}, r"filter field '\\ud800' is not valid Unicode text"),
        ({"Unit Price": 1}, r"filter field 'Unit Price' is not a name the store can filter on"),
        ({"brand": ["a", 1]}, r"has values \['a', 1\]; expected a non-empty list of all strings or all integers"),
        ({"brand": []}, r"expected a non-empty list"),
        ({"brand": 2**64}, r"value 18446744073709551616, outside the 64-bit integer range"),
        ({"brand": 1.5}, r"has value 1\.5; expected a string, integer, bool, list"),
        ({"brand": None}, r"has value None; expected a string"),
    ],
)
def test_bad_filters_are_refused_before_the_engine(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_filter(spec)


def test_good_filters_still_parse():
    flt = parse_filter(
        {"price": {"gte": np.float32(3), "lt": np.int64(9)}, "in_stock": True, "brand": np.int64(3), "specs.weight": {"lt": 2}, "tags": ("a", "b")}
    )
    assert [(c.field, c.op, c.value) for c in flt.must] == [
        ("price", "range", {"gte": 3.0, "lt": 9.0}),
        ("in_stock", "eq", True),
        ("brand", "eq", 3),
        ("specs.weight", "range", {"lt": 2.0}),
        ("tags", "any", ["a", "b"]),
    ]
    assert type(flt.must[2].value) is int and not parse_filter(None) and not parse_filter({})


# event times and weights ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ts, message",
    [
        (float("nan"), r"ts nan is not a finite time.*pass ts=None for the current time"),
        (float("inf"), r"ts inf is not a finite time"),
        (-math.inf, r"ts -inf is not a finite time"),
        (pd.NaT, r"ts NaT is not a finite time"),
        (10**400, r"is not a finite time"),
        ("2999-01-01", r"ts '2999-01-01' \(2999-01-01 00:00 UTC\) is in the future: event times may lie at most 86400 seconds"),
        (NOW + FUTURE_TOLERANCE_S + 1, r"is in the future"),
        (NOW * 1000, r"it looks like milliseconds: divide by 1000"),
        (-3e9, r"ts -3000000000\.0 is before 1900-01-01"),
        (True, r"ts True is not a time"),
        ("yesterday", r"ts 'yesterday' is not a time; expected epoch seconds"),
    ],
)
def test_bad_timestamps_raise(ts, message):
    with pytest.raises(ConfigError, match=message):
        to_timestamp(ts, now=NOW)


def test_timestamp_rule_none_is_now_and_the_edges_are_kept():
    assert to_timestamp(None, now=NOW) == NOW
    assert to_timestamp(NOW + FUTURE_TOLERANCE_S, now=NOW) == NOW + FUTURE_TOLERANCE_S  # one day of clock skew
    assert to_timestamp(-1e9, now=NOW) == -1e9  # 1938: before 1970 is fine
    assert to_timestamp("2026-01-01T00:00:00Z", now=NOW) == 1767225600.0
    assert to_timestamp(dt.datetime(2020, 1, 1), now=NOW) == 1577836800.0  # naive = UTC
    assert to_timestamp(np.int64(7), now=NOW) == 7.0


@pytest.mark.parametrize("weight", [1e308, float("inf"), float("nan"), -1, True, "heavy", 10**400, MAX_WEIGHT * 2])
def test_bad_weights_raise(weight):
    with pytest.raises(ConfigError, match=r"weight .* is not valid; expected a finite number >= 0 and <= 1e\+06"):
        make_event("u", "i", "purchase", 1.0, weight)


def test_weight_cap_is_inclusive_and_numeric_text_is_read():
    assert make_event("u", "i", "purchase", 1.0, MAX_WEIGHT).weight == MAX_WEIGHT
    assert make_event("u", "i", "rating", 1.0, "4.5").weight == 4.5


@pytest.mark.parametrize(
    "args, message",
    [
        (("u" + SURROGATE, "i"), r"user_id 'u\\ud800' is not valid Unicode text \(lone surrogate '\\ud800' at character 1\)"),
        (("u", SURROGATE), r"item_id '\\ud800' is not valid Unicode text"),
        (("u", "i", "vi" + SURROGATE), r"kind 'vi\\ud800' is not valid Unicode text"),
        (("u", 10**100), r"item_id 1000.* is an integer of 333 bits"),
    ],
)
def test_bad_event_ids_and_kinds_raise(args, message):
    with pytest.raises(ConfigError, match=message):
        make_event(*args)


def test_events_from_frame_strict_or_with_rejects():
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "item_id": ["a", "b", "c", "d", "e"],
            "ts": [1.0, float("nan"), 3.0, 1e20, 2.0],
            "weight": [1.0, 1.0, 1e308, 1.0, 1.0],
        }
    )
    with pytest.raises(ConfigError, match=r"Events row 1: ts nan is not a finite time"):
        events_from_frame(frame)
    rejects: list[Reject] = []
    events = events_from_frame(frame, rejects=rejects)
    assert [(e.item_id, e.ts) for e in events] == [("a", 1.0), ("e", 2.0)]  # order kept
    assert [r.row for r in rejects] == [1, 2, 3]
    assert "ts nan is not a finite time" in rejects[0].reason and "weight 1e+308" in rejects[1].reason
    assert "in the future" in rejects[2].reason and rejects[2].item_id == "d"
    assert json.loads(rejects[0].to_json())["data"]["ts"] is None
    with pytest.raises(ConfigError, match=r"no \['user_id'\] column"):
        events_from_frame(pd.DataFrame({"item_id": ["a"]}), rejects=[])


def test_events_without_ts_column_are_now():
    before = time.time()
    (event,) = events_from_frame(pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}))
    assert before <= event.ts <= time.time()


# catalog rows -----------------------------------------------------------------------------------
def test_surrogates_anywhere_reject_only_their_row():
    good = {"item_id": "ok", "name": "Kettle", "tags": "tea|kitchen", "brand": "Acme"}
    bad = [
        {"item_id": "t", "name": "Tags", "tags": ["fine", "x" + SURROGATE]},
        {"item_id": "s" + SURROGATE, "name": "Id"},
        {"item_id": "n", "name": "bad " + SURROGATE},
        {"item_id": "c", "name": "Category", "category": SURROGATE},
        {"item_id": "d", "name": "Description", "description": SURROGATE},
        {"item_id": "e", "name": "Extra", "brand": SURROGATE},
        {"item_id": "k", "name": "Key", "specs": {SURROGATE: 1}},
    ]
    cat = load_catalog(_frame([good, *bad]))
    assert [i.item_id for i in cat.items] == ["ok"]
    assert cat.items[0].payload()["brand"] == "Acme"
    reasons = {r.row: r.reason for r in cat.rejects}
    assert reasons[1] == (
        "tags[1] is not valid Unicode text (lone surrogate '\\ud800' at character 1); fix the "
        "source's encoding or drop the character"
    )
    assert reasons[2].startswith("item_id is not valid Unicode text (lone surrogate")
    assert reasons[3].startswith("name is not valid Unicode text")
    assert reasons[4].startswith("category is not valid Unicode text")
    assert reasons[5].startswith("description is not valid Unicode text")
    assert reasons[6].startswith("'brand' is not valid Unicode text")
    assert reasons[7].startswith("a key in 'specs' is not valid Unicode text")


def test_extra_values_missing_rejected_or_stored():
    rows = [
        {"item_id": "nan", "name": "A", "price": float("nan")},
        {"item_id": "inf", "name": "B", "price": float("inf")},
        {"item_id": "big", "name": "C", "price": 2**70},
        {"item_id": "long", "name": "D", "brand": "x" * 10_001},
        {"item_id": "bytes", "name": "E", "brand": b"acme"},
        {"item_id": "set", "name": "F", "brand": {"a"}},
        {"item_id": "deep", "name": "G", "specs": [[[[[[[[[1]]]]]]]]]},
        {"item_id": "hole", "name": "H", "specs": [1.0, float("nan")]},
        {"item_id": "json", "name": "I", "specs": {"w": [1, 2.5, "kg"], "ok": True}, "brand": "Acme"},
        {"item_id": "dates", "name": "J", "when": pd.Timestamp("2020-01-02"), "day": dt.date(2020, 1, 3), "price": Decimal("2.5")},
        {"item_id": "huge", "name": "K", "specs": ["x" * 6000, "y" * 6000]},
        {"item_id": "keys", "name": "L", "specs": {1: "a", np.int64(2): "b", 10**5000: "c"}},
    ]
    cat = load_catalog(_frame(rows))
    payloads = {i.item_id: i.payload() for i in cat.items}
    assert list(payloads) == ["nan", "json", "dates", "keys"]
    assert payloads["keys"]["specs"] == {"1": "a", "2": "b", "<int>": "c"}  # JSON keys are text
    assert "price" not in payloads["nan"]  # NaN = missing: the field is left out
    assert payloads["json"]["specs"] == {"w": [1, 2.5, "kg"], "ok": True}
    assert (payloads["dates"]["when"], payloads["dates"]["day"], payloads["dates"]["price"]) == ("2020-01-02T00:00:00", "2020-01-03", 2.5)
    reasons = {r.item_id: r.reason for r in cat.rejects}
    assert reasons["inf"] == "'price' is inf; expected a finite number (leave the cell empty for a missing value)"
    assert reasons["big"].startswith("'price' is 1180591620717411303424, outside the 64-bit integer range")
    assert reasons["long"] == "'brand' is 10001 characters, more than the 10000 allowed; put long text in 'description'"
    assert "'brand' holds a value of type bytes" in reasons["bytes"] and "of type set" in reasons["set"]
    assert reasons["deep"] == "'specs' is nested more than 8 levels deep; flatten it"
    assert reasons["hole"].startswith("'specs' holds a missing value (None or NaN) inside a list or dict")
    assert reasons["huge"].startswith("'specs' is 12008 characters as JSON, more than the 10000 allowed")


@pytest.mark.parametrize(
    "column, message",
    [
        ("Unit Price", r"Catalog column 'Unit Price' cannot be a stored field.*df\.rename\(columns=\{'Unit Price': 'unit_price'\}\)"),
        ("Unnamed: 0", r"'Unnamed: 0' \(a CSV saved with its index: save it with index=False\)"),
        ("a.b", r"Catalog column 'a\.b' cannot be a stored field"),
        ("", r"Catalog column '' cannot be a stored field"),
        ("x" + SURROGATE, r"Catalog column 'x\\ud800' cannot be a stored field"),
    ],
)
def test_column_names_the_store_cannot_use_fail_the_catalog(column, message):
    with pytest.raises(CatalogError, match=message):
        columns = pd.Index(["item_id", "name", column], dtype=object)  # pandas refuses surrogates otherwise
        load_catalog(pd.DataFrame([["a", "Kettle", 1]], columns=columns, dtype=object))


def test_canonical_id_refuses_surrogates_and_giant_integers():
    with pytest.raises(ConfigError, match=r"item_id 'a\\udfff' is not valid Unicode text"):
        canonical_id("a\udfff")
    with pytest.raises(ConfigError, match=r"is an integer of 16610 bits"):
        canonical_id(10**5000)  # too long even to print as text


# rejects file -----------------------------------------------------------------------------------
def test_rejects_file_is_written_whole_with_surrogates(tmp_path):
    rows = [{"item_id": "a", "name": "Kettle"}] + [
        {"item_id": f"b{n}", "name": "bad " + SURROGATE, "tags": [SURROGATE] * 3, "price": float("inf")} for n in range(50)
    ]
    rows.append({"item_id": SURROGATE, "name": "x" * 5000, "specs": {"k": [float("inf"), None]}})
    cat = load_catalog(_frame(rows))
    assert [i.item_id for i in cat.items] == ["a"] and len(cat.rejects) == 51
    path = write_rejects(cat.rejects, tmp_path / "rejects.jsonl")
    text = path.read_bytes().decode("utf-8")  # strict: valid UTF-8 throughout
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 51 and [r["row"] for r in lines] == list(range(1, 52))
    assert lines[0]["data"]["name"] == "bad \\ud800"  # the surrogate, written as visible text
    assert lines[0]["data"]["price"] == "inf"
    assert lines[-1]["item_id"] == "\\ud800" and lines[-1]["data"]["specs"] == {"k": ["inf", None]}
    assert lines[-1]["data"]["name"].endswith("... (5000 characters)")  # long text cut
    assert [p.name for p in tmp_path.iterdir()] == ["rejects.jsonl"]  # no temporary file left


def test_rejects_overwrite_flag(tmp_path):
    path = tmp_path / "rejects.jsonl"
    write_rejects([Reject(1, "first")], path)
    with pytest.raises(ConfigError, match=r"Rejects file '.*rejects\.jsonl' already exists; remove it, choose another path, or pass overwrite=True"):
        write_rejects([Reject(2, "second")], path, overwrite=False)
    assert json.loads(path.read_text())["reason"] == "first"
    write_rejects([Reject(2, "second")], path)  # default: replaced
    assert json.loads(path.read_text())["reason"] == "second"


def test_reject_to_json_never_fails():
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no")

    nested: list = []
    for _ in range(2000):
        nested = [nested]
    reject = Reject(0, "why " + SURROGATE, np.int64(3), {"a": Unprintable(), "b": nested, "c": {SURROGATE: np.float32("nan")}, "d": list(range(500))})
    record = json.loads(reject.to_json())
    assert record["reason"] == "why \\ud800" and record["item_id"] == 3 and record["data"]["a"] == "<Unprintable>"
    assert record["data"]["c"] == {"\\ud800": None} and record["data"]["d"][-1] == "... (500 items)"


# tags: caps and linear de-duplication -----------------------------------------------------------
def test_tags_are_capped_and_deduplicated(caplog):
    tags = [f"t{n}" for n in range(100_000)] + ["t1"] * 100_000 + ["x" * 101]
    with caplog.at_level(logging.WARNING, logger="semrec.catalog"):
        cat = load_catalog(_frame([{"item_id": "a", "name": "Many tags", "tags": tags}, {"item_id": "b", "name": "Few", "tags": "a|a|b"}]))
    assert cat.items[0].tags == [f"t{n}" for n in range(MAX_TAGS)]
    assert cat.items[1].tags == ["a", "b"] and not cat.rejects
    assert "1 catalog row(s) had more than 100 tags" in caplog.text
    assert parse_tags(["long" * 30, "ok", "ok"]) == ["ok"]  # a tag over 100 characters is dropped


def _tag_seconds(n: int) -> float:
    frame = _frame([{"item_id": "a", "name": "x", "tags": [f"t{i}" for i in range(n)] * 2}])
    started = time.perf_counter()
    load_catalog(frame)
    return time.perf_counter() - started


def test_tag_deduplication_is_not_quadratic():
    # linear: ~5x the time for 5x the tags; the old list-membership loop took ~25x (50 s at 100k)
    small = statistics.median(_tag_seconds(20_000) for _ in range(3))
    large = statistics.median(_tag_seconds(100_000) for _ in range(3))
    assert large / small < 10


# search text ------------------------------------------------------------------------------------
def test_clean_query_text():
    assert clean_query_text("  quiet\twireless\x00 earphones\n") == "quiet wireless earphones"
    assert clean_query_text("cafe\u0301") == "caf\u00e9"  # NFC
    with pytest.raises(ConfigError, match=r"search text 'tea \\ud800' has a lone surrogate '\\ud800' at character 4, which is not valid Unicode; remove it"):
        clean_query_text("tea \ud800")
    with pytest.raises(ConfigError, match=r"search text ' \\x00 ' is empty; expected words describing items"):
        clean_query_text(" \x00 ")
    with pytest.raises(ConfigError, match=r"search text 42 is a int, not text; pass a string"):
        clean_query_text(42)
    with pytest.raises(ConfigError, match=r"is 11 characters, more than the 10 allowed; shorten it"):
        clean_query_text("hello world", max_chars=10)


# properties -------------------------------------------------------------------------------------
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
#: Any text, with lone surrogates, separators and control characters frequent.
HOSTILE_TEXT = st.lists(st.one_of(st.characters(), _SURROGATES, st.sampled_from(" |,\x00\n")), max_size=12).map("".join)
SAFE_TEXT = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=20)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
HOSTILE_VALUE = st.one_of(st.none(), ANY_FLOAT, st.integers(), HOSTILE_TEXT, st.booleans(), st.lists(ANY_FLOAT, max_size=3))

GOOD_ITEM = st.fixed_dictionaries(
    {"name": SAFE_TEXT},
    optional={
        "tags": st.lists(SAFE_TEXT, max_size=5),
        "price": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(float("nan"))),
        "brand": SAFE_TEXT,
    },
)
HOSTILE_ITEM = st.fixed_dictionaries(
    {"item_id": st.one_of(st.none(), ANY_FLOAT, st.integers(), HOSTILE_TEXT.map("h".__add__), st.just(SURROGATE)), "name": HOSTILE_VALUE},
    optional={"tags": st.one_of(HOSTILE_TEXT, st.lists(HOSTILE_TEXT, max_size=5)), "price": HOSTILE_VALUE, "brand": HOSTILE_VALUE},
)


def _storable(payload: dict) -> bool:
    """What the engine takes: JSON without NaN/inf, in valid UTF-8."""
    json.dumps(payload, allow_nan=False).encode("utf-8")
    return True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(GOOD_ITEM.map(lambda r: ("good", r)), HOSTILE_ITEM.map(lambda r: ("hostile", r))), min_size=1, max_size=12), st.data())
def test_catalog_never_crashes_and_keeps_every_good_row(rows, data):
    records, good_ids = [], []
    for n, (kind, row) in enumerate(rows):
        if kind == "good":
            row = {**row, "item_id": f"g{n}"}
            good_ids.append(row["item_id"])
        records.append(row)
    duplicates = data.draw(st.lists(st.sampled_from(good_ids), max_size=2)) if good_ids else []
    records += [{"item_id": i, "name": "dup"} for i in duplicates]
    cat = load_catalog(_frame(records))
    kept = [i.item_id for i in cat.items]
    assert set(good_ids) <= set(kept)  # every good row comes back
    assert len(kept) == len(set(kept)) and len(cat.items) + len(cat.rejects) == len(records)
    assert all(_storable(i.payload()) and len(i.tags) <= MAX_TAGS for i in cat.items)
    for reject in cat.rejects:
        assert reject.reason and json.loads(reject.to_json().encode("utf-8"))["row"] == reject.row


GOOD_EVENT = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["view", "purchase"]),
        "ts": st.one_of(st.none(), st.floats(min_value=-2e9, max_value=time.time() - 1)),
        "weight": st.floats(min_value=0, max_value=MAX_WEIGHT),
    }
)
HOSTILE_EVENT = st.fixed_dictionaries(
    {
        "user_id": st.one_of(st.none(), ANY_FLOAT, HOSTILE_TEXT),
        "item_id": st.one_of(st.none(), ANY_FLOAT, st.integers(), HOSTILE_TEXT),
        "kind": st.one_of(HOSTILE_TEXT, st.none()),
        "ts": st.one_of(ANY_FLOAT, st.floats(min_value=time.time() + 2 * 86_400, max_value=1e300), HOSTILE_TEXT, st.datetimes()),
        "weight": st.one_of(ANY_FLOAT, HOSTILE_TEXT, st.booleans()),
    }
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(GOOD_EVENT.map(lambda r: ("good", r)), HOSTILE_EVENT.map(lambda r: ("hostile", r))), min_size=1, max_size=12), st.data())
def test_events_never_crash_and_keep_every_good_row(rows, data):
    records, good = [], {}
    for n, (kind, row) in enumerate(rows):
        if kind == "good":
            row = {**row, "user_id": f"u{n % 3}", "item_id": f"i{n}"}
            good[n] = row
        records.append(row)
    if good:  # exact duplicates and out-of-order rows are good rows too
        records += [dict(good[n]) for n in data.draw(st.lists(st.sampled_from(sorted(good)), max_size=2))]
        good.update({len(rows) + k: r for k, r in enumerate(records[len(rows):])})
    frame = _frame(records)
    rejects: list[Reject] = []
    events = events_from_frame(frame, rejects=rejects)
    rejected = [r.row for r in rejects]
    assert not set(rejected) & set(good) and len(events) + len(rejects) == len(records)
    accepted = [n for n in range(len(records)) if n not in set(rejected)]
    for n, event in zip(accepted, events):
        assert math.isfinite(event.ts) and 0 <= event.weight <= MAX_WEIGHT
        if n in good:
            assert (event.user_id, event.item_id) == (good[n]["user_id"], good[n]["item_id"])
            assert good[n]["ts"] is None or event.ts == good[n]["ts"]
    for reject in rejects:
        json.loads(reject.to_json().encode("utf-8"))
    try:
        assert len(events_from_frame(frame)) == len(records) and not rejects
    except ConfigError:
        assert rejects
