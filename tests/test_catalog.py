"""Catalog reading and validation: good rows index, bad rows are rejected with a reason."""

import json

import numpy as np
import pandas as pd
import pytest

from semrec import CatalogError, ConfigError, load_catalog, write_rejects
from semrec.catalog import Item, item_text, parse_tags, read_table


def _frame(**columns):
    return pd.DataFrame(columns)


def test_valid_rows_become_items_with_payload_and_text():
    cat = load_catalog(
        _frame(
            item_id=[1, "b2"],
            name=["Chef knife", "Garden spade"],
            category=["Kitchen > Knives", None],
            tags=["knife|steel", ["garden", "digging"]],
            price=[30.5, np.nan],
        )
    )
    assert [i.item_id for i in cat.items] == ["1", "b2"]
    knife, spade = cat.items
    assert knife.category_levels == ["Kitchen", "Kitchen > Knives"]
    assert knife.tags == ["knife", "steel"] and spade.tags == ["garden", "digging"]
    assert knife.text == "Chef knife. Category: Kitchen > Knives. Tags: knife, steel."
    assert spade.text == "Garden spade. Tags: garden, digging."  # empty category sentence dropped
    assert knife.payload()["price"] == 30.5 and "price" not in spade.payload()  # NaN payload dropped


def test_bad_rows_are_rejected_with_reasons_and_good_rows_kept():
    cat = load_catalog(
        _frame(
            item_id=["a", "b", "a", None, "e", "f", "g"],
            name=["Kettle", "", "Kettle copy", "No id", "x" * 600, "bad \ud800 text", 12.5],
        )
    )
    assert [i.item_id for i in cat.items] == ["a"]
    reasons = {r.row: r.reason for r in cat.rejects}
    assert reasons[1] == "name is missing or empty"
    assert reasons[2].startswith("duplicate item_id 'a' (first seen at row 0)")
    assert reasons[3].startswith("item_id is missing or invalid")
    assert "600 characters, more than the 500 allowed" in reasons[4]
    assert "not valid Unicode" in reasons[5]
    assert "name must be text, got float 12.5" in reasons[6]


def test_nan_name_and_float_ids():
    cat = load_catalog(_frame(item_id=[3.0, 4.5], name=[np.nan, "Lamp"]))
    assert not cat.items
    assert [r.reason for r in cat.rejects] == ["name is missing or empty", "item_id is missing or invalid (4.5)"]


def test_long_description_is_capped_and_control_characters_cleaned():
    cat = load_catalog(_frame(item_id=["a"], name=["Tea\x00 pot\n"], description=["d" * 5000]))
    item = cat.items[0]
    assert item.name == "Tea pot" and len(item.description) == 1000


def test_catalog_without_name_column_is_a_clear_error():
    with pytest.raises(CatalogError, match=r"Catalog has no 'name' column \(columns: item_id, title\).*rename"):
        load_catalog(_frame(item_id=[1], title=["Kettle"]))


def test_reserved_column_and_template_errors():
    with pytest.raises(CatalogError, match="reserves"):
        load_catalog(_frame(item_id=[1], name=["x"], popularity=[3]))
    with pytest.raises(ConfigError, match=r"has no \{name\} field"):
        load_catalog(_frame(item_id=[1], name=["x"]), template="{category}")


def test_custom_template_with_description():
    item = Item("1", "Kettle", "Kitchen", ["tea"], "Boils fast.")
    assert item_text(item, "{name}: {description}") == "Kettle: Boils fast."


@pytest.mark.parametrize("value,expected", [("a|b, c", ["a", "b", "c"]), (["x", "x", 3], ["x"]), (None, [])])
def test_parse_tags(value, expected):
    assert parse_tags(value) == expected


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_file_formats_round_trip(tmp_path, suffix):
    frame = _frame(item_id=["1", "2"], name=["Kettle", "Spade"], tags=["tea|kitchen", "garden"])
    path = tmp_path / f"catalog{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    cat = load_catalog(path)
    assert [(i.item_id, i.name, i.tags) for i in cat.items] == [
        ("1", "Kettle", ["tea", "kitchen"]),
        ("2", "Spade", ["garden"]),
    ]


def test_unreadable_inputs(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(CatalogError, match=r"Unsupported file type '\.txt'"):
        read_table(tmp_path / "x.txt")


def test_rejects_file_is_jsonl(tmp_path):
    cat = load_catalog(_frame(item_id=["a", "b"], name=["ok", ""]))
    path = write_rejects(cat.rejects, tmp_path / "rejects.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"row": 1, "item_id": "b", "reason": "name is missing or empty", "data": {"item_id": "b", "name": ""}}]


def test_sample_catalog_is_clean(catalog):
    cat = load_catalog(catalog)
    assert len(cat.items) >= 200 and not cat.rejects
    tops = {i.category_levels[0] for i in cat.items}
    assert len(tops) >= 8
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in i.name) for i in cat.items)
