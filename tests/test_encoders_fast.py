"""Fast encoder backends: one encoder contract for every backend, the quality guard, the GPU
input pipeline (run on CPU), the export cache and the missing-extra message.

The contract runs on a tiny random BERT built here (CLS pooling, max_seq_length 64), so exports
take seconds; the real all-MiniLM-L6-v2 is checked in the `slow` tests.
"""

from __future__ import annotations

import logging
import sys
import warnings

import numpy as np
import pytest

from conftest import extra_installed
from semrec.encoders import FAST_CPU_BACKENDS, load_encoder
from semrec.encoders._calibration_texts import CALIBRATION_TEXTS
from semrec.encoders._pipeline import (
    Tokenizer,
    cache_root,
    cached_export,
    length_sorted_batches,
    pad_batch,
)
from semrec.encoders.base import MAX_TEXT_CHARS, cap_texts, resolve_model
from semrec.errors import ConfigError, MissingExtraError

TEXTS = [
    "red running shoes",
    "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy",
    "a",
    "Recipe: Thai green curry with tofu. Tags: vegan, spicy, quick weeknight dinner for two",
    "Noise-cancelling headphones",
    "",
]
CPU_BACKENDS = [*FAST_CPU_BACKENDS, "gpu"]


def _backend_available(name: str) -> bool:
    """False only when the `fast` extra is not installed; a half-installed or broken one fails."""
    needs = {"onnx": ["onnxruntime", "onnxscript", "onnx"], "openvino": ["openvino", "nncf"]}
    family = name.split("-")[0]
    return family not in needs or extra_installed("fast", *needs[family])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer, 32-d random BERT as a sentence-transformers folder, with CLS pooling."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None)[1])
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    st = SentenceTransformer(
        modules=[
            Transformer(str(root / "hf"), max_seq_length=64),
            Pooling(32, pooling_mode="cls"),
            Normalize(),
        ],
        device="cpu",
    )
    st.save(str(root / "st"))
    return str(root / "st")


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("encoder-cache")


@pytest.fixture(scope="session")
def torch_encoder(tiny_model):
    return load_encoder(tiny_model, backend="torch")


@pytest.fixture(scope="session")
def encoders(tiny_model, cache):
    """Each backend, loaded (and exported) once per session; None when its extra is missing."""
    built = {}
    for name in ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8", "gpu"):
        if not _backend_available(name):
            built[name] = None
            continue
        device = "cpu" if name == "gpu" else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built[name] = load_encoder(
                tiny_model, name, CALIBRATION_TEXTS[:40], device=device, cache_dir=cache
            )
    return built


@pytest.fixture(params=CPU_BACKENDS)
def encoder(request, encoders):
    enc = encoders[request.param]
    if enc is None:
        pytest.skip(f"backend {request.param!r} needs the 'fast' extra")
    return enc


# --- the encoder contract, for every backend ------------------------------------------------


def test_shape_dtype_unit_norm(encoder, torch_encoder):
    vectors = encoder.encode(TEXTS, batch_size=2)
    assert vectors.shape == (len(TEXTS), torch_encoder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = encoder.encode_query("red running shoes")
    assert query.shape == (torch_encoder.dim,) and query.dtype == np.float32
    assert abs(np.linalg.norm(query) - 1.0) < 1e-5


def test_deterministic_and_order_kept(encoder):
    first = encoder.encode(TEXTS, batch_size=3)
    np.testing.assert_array_equal(first, encoder.encode(TEXTS, batch_size=3))
    # length-sorted batching must give each text back its own row
    reordered = encoder.encode(TEXTS[::-1], batch_size=64)
    np.testing.assert_allclose(reordered[::-1], first, atol=2e-3)
    np.testing.assert_allclose(encoder.encode_query(TEXTS[1]), first[1], atol=2e-3)


def test_empty_input(encoder, torch_encoder):
    out = encoder.encode([])
    assert out.shape == (0, torch_encoder.dim) and out.dtype == np.float32


def test_huge_text_is_capped(encoder):
    huge = "word " * 200_000
    vectors = encoder.encode([huge, "short"])
    assert np.isfinite(vectors).all()
    capped = encoder.encode(cap_texts([huge]))
    # onnx-int8 quantises activations per batch, so batch company moves it slightly
    np.testing.assert_allclose(vectors[0], capped[0], atol=2e-3)
    assert np.isfinite(encoder.encode_query(huge)).all()
    assert len(cap_texts([huge])[0]) == MAX_TEXT_CHARS


def test_same_fingerprint_as_torch(encoder, torch_encoder):
    assert encoder.fingerprint == torch_encoder.fingerprint
    assert encoder.name == torch_encoder.name
    assert encoder.backend != "torch"


def test_vectors_follow_torch(encoder, torch_encoder):
    """Same pooling (CLS here, read from the model) and tokenisation as sentence-transformers."""
    ref = torch_encoder.encode(TEXTS)
    got = encoder.encode(TEXTS)
    cos = np.sum(ref * got, axis=1)
    floor = 0.95 if encoder.backend.endswith("int8") else 0.9999
    assert cos.min() >= floor, (encoder.backend, cos)


# --- tokenising and batching ----------------------------------------------------------------


def test_tokenizer_matches_sentence_transformers(torch_encoder):
    st = torch_encoder.model
    tok = Tokenizer(st.tokenizer, st.max_seq_length)
    texts = [*TEXTS[:-1], "long " * 500]
    ours = tok(texts)
    theirs = st.preprocess(texts)
    for row, ids in enumerate(ours):
        assert len(ids) == int(theirs["attention_mask"][row].sum()) <= 64
        assert ids == theirs["input_ids"][row][: len(ids)].tolist()


def test_length_sorted_batches_cover_each_row_once():
    lengths = [9, 3, 3, 50, 1, 20, 7, 7, 2]
    batches = length_sorted_batches(lengths, batch_size=4, max_tokens=60)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 60
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        length_sorted_batches([1], batch_size=0)


@pytest.mark.parametrize("workers", [0, 2], ids=["thread", "processes"])
def test_gpu_pipeline_on_cpu_multi_chunk(tiny_model, torch_encoder, workers):
    """The GPU path's bucketing and its tokenisation ahead of the model (in a thread, or in
    forked worker processes), with the model in fp32 on CPU: same vectors, input order kept."""
    import torch

    from semrec.encoders.gpu_backend import GpuEncoder, chunk_batches

    enc = GpuEncoder(
        torch_encoder,
        device="cpu",
        dtype=torch.float32,
        workers=workers,
        max_tokens=64,
        chunk_texts=7,
    )
    texts = list(CALIBRATION_TEXTS[:30]) + TEXTS
    try:
        got = enc.encode(texts)
        np.testing.assert_allclose(got, torch_encoder.encode(texts), atol=1e-4)
        assert (enc._pool is not None) == (workers > 0)  # workers start for multi-chunk inputs
        np.testing.assert_allclose(enc.encode(texts[::-1]), got[::-1], atol=1e-5)  # pool reused
    finally:
        enc.close()
    assert enc._pool is None
    batches = chunk_batches(enc.tokenizer, texts[:10], max_tokens=64)
    rows = np.concatenate([rows for rows, _, _ in batches])
    assert sorted(rows.tolist()) == list(range(10))
    for _rows, ids, mask in batches:
        assert ids.shape == mask.shape and (ids.shape[0] == 1 or ids.size <= 64)


def test_gpu_worker_death_is_a_clear_error_and_the_pool_restarts(torch_encoder):
    """A killed tokenising worker fails the encode with a message saying what to do; the next
    encode starts a fresh pool and gives the same vectors."""
    import os
    import signal
    import time

    import torch

    from semrec.encoders.gpu_backend import GpuEncoder
    from semrec.errors import SemrecError

    enc = GpuEncoder(torch_encoder, device="cpu", dtype=torch.float32, workers=2, chunk_texts=5)
    texts = list(CALIBRATION_TEXTS[:40])
    try:
        want = enc.encode(texts)
        victim = next(iter(enc._pool._processes))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not enc._pool._broken and time.monotonic() < deadline:  # noticed asynchronously
            time.sleep(0.05)
        with pytest.raises(SemrecError, match=r"worker process .* died.*call encode again"):
            enc.encode(texts)
        assert enc._pool is None
        np.testing.assert_allclose(enc.encode(texts), want, atol=1e-5)
        assert victim not in enc._pool._processes
    finally:
        enc.close()


def test_gpu_worker_processes_tokenise_exactly_like_the_model(torch_encoder):
    """Forked workers produce the same padded ids as this process; they tokenise single-threaded
    (the Rust thread pool does not survive a fork) and the parent's TOKENIZERS_PARALLELISM is
    left as it was."""
    import os

    from semrec.encoders.gpu_backend import (
        Tokenizer,
        _worker_chunk,
        chunk_batches,
        start_worker_pool,
    )

    st = torch_encoder.model
    tokenizer = Tokenizer(st.tokenizer, st.max_seq_length)
    texts = [*TEXTS, "word " * 200, "Amélie (2001) — Comédie, Romance", "東京物語"]
    tokenizer(texts)  # the parent has used the Rust tokenizer before forking
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    pool = start_worker_pool(tokenizer, 2)
    try:
        remote = pool.submit(_worker_chunk, texts, 64, 3).result()
        assert pool.submit(os.getenv, "TOKENIZERS_PARALLELISM").result() == "false"
    finally:
        pool.shutdown()
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before
    local = chunk_batches(tokenizer, texts, max_tokens=64, max_rows=3)
    assert len(remote) == len(local)
    for got, want in zip(remote, local):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


# --- the export cache -----------------------------------------------------------------------


def test_export_is_cached(encoders, torch_encoder, cache, tiny_model):
    name = next((n for n in FAST_CPU_BACKENDS if encoders.get(n) is not None), None)
    if name is None:
        pytest.skip("needs the 'fast' extra")

    def must_not_build(_folder):
        raise AssertionError("exported twice")

    folder = cached_export(torch_encoder.fingerprint, name, cache, must_not_build)
    assert folder.name == f"{torch_encoder.fingerprint.weights}-{name}"
    assert (folder / "meta.json").is_file()
    again = load_encoder(tiny_model, name, cache_dir=cache)  # loads, no export
    np.testing.assert_array_equal(again.encode(TEXTS), encoders[name].encode(TEXTS))


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMREC_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path / "encoders"
    monkeypatch.delenv("SEMREC_CACHE_DIR")
    assert cache_root().parts[-3:] == (".cache", "semrec", "encoders")
    assert cache_root(tmp_path / "x") == tmp_path / "x"


# --- the quality guard ----------------------------------------------------------------------


class NoisyEncoder:
    """Wraps an encoder and corrupts its vectors on purpose."""

    def __init__(self, inner, scale: float = 0.5) -> None:
        self.inner, self.scale = inner, scale
        self.name, self.dim, self.backend = inner.name, inner.dim, inner.backend + "-noisy"

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def encode(self, texts, *, batch_size=64, show_progress=False):
        vectors = self.inner.encode(texts, batch_size=batch_size)
        noise = np.random.default_rng(0).normal(size=vectors.shape).astype(np.float32)
        noisy = vectors + self.scale * noise / np.sqrt(self.dim)
        return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)

    def encode_query(self, text):
        return self.encode([text])[0]


def test_guard_passes_faithful_and_rejects_corrupted(torch_encoder):
    from semrec.encoders.quality_guard import compare, guarded

    same = compare(torch_encoder, torch_encoder, CALIBRATION_TEXTS[:50])
    assert same.passed and same.mean_cosine > 0.9999 and same.top10_overlap == 1.0
    noisy = NoisyEncoder(torch_encoder)
    with pytest.warns(RuntimeWarning, match="Quality guard rejected backend 'torch-noisy'"):
        chosen, report = guarded(noisy, torch_encoder, CALIBRATION_TEXTS[:50])
    assert chosen is torch_encoder
    assert not report.passed and report.top10_overlap < 0.93


def test_auto_falls_back_to_torch_when_backends_are_corrupted(tiny_model, cache, monkeypatch):
    import semrec.encoders as encoders_module

    real = encoders_module._fast_cpu
    monkeypatch.setattr(
        encoders_module, "_fast_cpu", lambda *a, **k: NoisyEncoder(real(*a, **k), scale=1.0)
    )
    monkeypatch.setattr(encoders_module, "AUTO_ORDER", ("onnx-fp32",))
    if not _backend_available("onnx-fp32"):
        pytest.skip("needs the 'fast' extra")
    with pytest.warns(RuntimeWarning, match="No fast encoder backend passed the quality guard"):
        enc = load_encoder(tiny_model, "auto", device="cpu", cache_dir=cache)
    assert enc.backend == "torch"


def test_auto_picks_a_guarded_fast_backend(tiny_model, cache, monkeypatch):
    import semrec.encoders as encoders_module

    if not _backend_available("openvino-fp32"):
        pytest.skip("needs the 'fast' extra")
    monkeypatch.setattr(encoders_module, "AUTO_ORDER", ("openvino-fp32",))
    enc = load_encoder(tiny_model, "auto", device="cpu", cache_dir=cache)
    assert enc.backend == "openvino-fp32"


def test_auto_order_follows_int8_instructions():
    import semrec.encoders as encoders_module
    from semrec.encoders import AUTO_ORDER_FP32, AUTO_ORDER_INT8, cpu_has_int8_dot

    has_dot = cpu_has_int8_dot()
    expected = AUTO_ORDER_FP32 if has_dot is False else AUTO_ORDER_INT8
    assert encoders_module.AUTO_ORDER == expected
    assert not any(name.endswith("int8") for name in AUTO_ORDER_FP32)
    assert AUTO_ORDER_INT8[0] == "openvino-int8"


def test_openvino_int8_keeps_sensitive_layers_fp32(encoders):
    """Q/K/V and FFN output projections stay fp32; the other linear layers get int8 inputs."""
    import json
    import re

    import openvino as ov

    from semrec.encoders.openvino_backend import FP32_SCOPES

    enc = encoders.get("openvino-int8")
    if enc is None:
        pytest.skip("needs the 'fast' extra")
    meta = json.loads((enc.export_dir / "meta.json").read_text())
    assert meta["fp32_scopes"] == list(FP32_SCOPES)
    model = ov.Core().read_model(str(enc.export_dir / "model.xml"))
    kept, quantised = [], []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or "aten::linear" not in op.get_friendly_name():
            continue
        fed_by_fq = op.input_value(0).get_node().get_type_name() == "FakeQuantize"
        if any(re.fullmatch(p, op.get_friendly_name()) for p in FP32_SCOPES):
            kept.append(fed_by_fq)
        else:
            quantised.append(fed_by_fq)
    # tiny model: 2 layers x (q, k, v, FFN out) kept, 2 x (attention out, FFN in) quantised
    assert len(kept) == 8 and not any(kept)
    assert len(quantised) == 4 and all(quantised)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend,module", [("onnx-int8", "onnxruntime"), ("openvino-int8", "openvino")]
)
def test_missing_extra_names_the_install_line(tiny_model, cache, monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # import now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'semrec\[fast\]'"):
        load_encoder(tiny_model, backend, cache_dir=cache)


def test_auto_without_extras_uses_torch_quietly(tiny_model, cache, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="semrec.encoders")
    for module in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, module, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning to the user, only a log line
        enc = load_encoder(tiny_model, "auto", device="cpu", cache_dir=cache)
    assert enc.backend == "torch"
    assert "pip install 'semrec[fast]'" in caplog.text


def test_unknown_backend_and_gpu_without_cuda(tiny_model):
    import torch

    with pytest.raises(ConfigError, match="Unknown encoder backend 'tensorrt'"):
        load_encoder(tiny_model, "tensorrt")
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match="needs CUDA"):
        load_encoder(tiny_model, "gpu")


# --- the real model -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino-int8", "onnx-int8"])
def test_default_model_int8_quality(backend, tmp_path_factory, request):
    from semrec.encoders.quality_guard import compare

    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("exports the real model (about a minute): run with -m slow")

    if not _backend_available(backend):
        pytest.skip("needs the 'fast' extra")
    cache = tmp_path_factory.mktemp("real-cache")
    reference = load_encoder(None, "torch")
    fast = load_encoder(None, backend, cache_dir=cache)
    assert fast.fingerprint == reference.fingerprint
    report = compare(fast, reference, CALIBRATION_TEXTS)
    assert report.mean_cosine >= 0.99, report.describe()
