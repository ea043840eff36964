"""semrec.datasets: the MovieLens and generic loaders, and split-dependent tag text."""

from __future__ import annotations

import pandas as pd
import pytest

from semrec.catalog import load_catalog
from semrec.datasets import load_dataset, load_movielens, top_tags_per_item
from semrec.errors import CatalogError, ConfigError


@pytest.fixture()
def movielens(tmp_path):
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n2,Heat (1995),Action|Crime\n"
        '3,"Odd, Film (2001)",(no genres listed)\n'
    )
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,2,2.5,200\n2,1,5.0,150\n2,3,3.0,160\n"
    )
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n1,1,pixar,90\n2,1,Pixar,140\n2,1,fun,145\n1,2,heist,300\n"
    )
    return tmp_path


def test_movielens_items_events_and_tags(movielens):
    ds = load_movielens(movielens)
    assert ds.items["item_id"].tolist() == ["1", "2", "3"]
    assert ds.items["tags"].tolist() == [["Adventure", "Animation", "Children"], ["Action", "Crime"], []]
    assert ds.events[["user_id", "item_id", "kind", "ts"]].iloc[0].tolist() == ["1", "1", "rating", 100.0]
    assert ds.events["rating"].tolist() == [4.0, 2.5, 5.0, 3.0]
    texts = {i.item_id: i.text for i in load_catalog(ds.catalog()).items}
    assert texts["1"] == "Toy Story (1995). Tags: Adventure, Animation, Children, pixar, fun."
    assert texts["2"] == "Heat (1995). Tags: Action, Crime, heist."
    assert texts["3"] == "Odd, Film (2001)."


def test_movielens_tags_follow_the_cutoff(movielens):
    ds = load_movielens(movielens)
    before = {i.item_id: i.text for i in load_catalog(ds.catalog(cutoff=142)).items}
    assert "pixar" in before["1"] and "fun" not in before["1"] and "heist" not in before["2"]
    per_user = {i.item_id: i.text for i in load_catalog(ds.catalog(cutoff={"1": 200.0, "2": 145.0})).items}
    # user 1's heist tag (ts 300) is after their cutoff; user 2's fun tag (145) is not before theirs
    assert "heist" not in per_user["2"] and "fun" not in per_user["1"] and "pixar" in per_user["1"]


def test_movielens_min_rating_and_missing_files(movielens, tmp_path_factory):
    assert len(load_movielens(movielens, min_rating=4.0).events) == 2
    with pytest.raises(CatalogError, match="ratings.csv"):
        load_movielens(tmp_path_factory.mktemp("empty"))


def test_top_tags_counts_case_insensitively_and_breaks_ties_alphabetically():
    tags = pd.DataFrame({"item_id": ["a"] * 5, "tag": ["Zed", "zed", "beta", "alpha", " "]})
    assert top_tags_per_item(tags, 2) == {"a": ["Zed", "alpha"]}
    assert top_tags_per_item(tags, 0) == {}


def test_generic_loader_renames_and_parses_times(tmp_path):
    (tmp_path / "items.csv").write_text("sku,title,tags\n10,Kettle,kitchen|tea\n11,Mug,kitchen\n")
    (tmp_path / "events.jsonl").write_text(
        '{"customer": "c1", "sku": 10, "when": "2024-01-01T00:00:00Z", "kind": "purchase"}\n'
        '{"customer": "c1", "sku": 11.0, "when": "2024-01-02T00:00:00Z", "kind": "view"}\n'
    )
    ds = load_dataset(
        tmp_path / "items.csv", tmp_path / "events.jsonl",
        columns={"sku": "item_id", "title": "name", "customer": "user_id", "when": "ts"},
    )
    assert ds.events["item_id"].tolist() == ["10", "11"]
    assert ds.events["ts"].tolist() == [1704067200.0, 1704153600.0]
    assert ds.events["weight"].tolist() == [1.0, 1.0]
    assert ds.items["tags"].tolist() == [["kitchen", "tea"], ["kitchen"]]


def test_generic_loader_errors_name_the_problem():
    items = pd.DataFrame({"item_id": [1], "name": ["Kettle"]})
    with pytest.raises(CatalogError, match=r"no \['ts'\] column"):
        load_dataset(items, pd.DataFrame({"user_id": ["u"], "item_id": [1]}))
    with pytest.raises(CatalogError, match=r"not in the catalog, e.g. \['2'\]"):
        load_dataset(items, pd.DataFrame({"user_id": ["u"], "item_id": [2], "ts": [0]}))
    with pytest.raises(ConfigError, match="'yesterday' is not a time"):
        load_dataset(items, pd.DataFrame({"user_id": ["u"], "item_id": [1], "ts": ["yesterday"]}))
