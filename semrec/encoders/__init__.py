"""Encoders: the `Encoder` protocol and its backends, chosen by name through `load_encoder`."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import DEFAULT_MODEL, Encoder, ModelFingerprint, l2_normalize, resolve_model
from .sentence_transformers_backend import SentenceTransformerEncoder

BACKENDS = ("auto", "torch")


def load_encoder(
    model: str | Path | None = None, backend: str = "auto", *, device: str | None = None
) -> Encoder:
    """Load an encoder for `model` (None: the packaged all-MiniLM-L6-v2).

    Args:
        model: a sentence-transformers model name or folder; None for the default model.
        backend: "torch" for plain sentence-transformers; "auto" picks the fastest available.

    Example:
        >>> enc = load_encoder()
        >>> enc.backend
        'torch'
    """
    if backend not in BACKENDS:
        raise ConfigError(
            f"Unknown encoder backend {backend!r}; expected one of {', '.join(BACKENDS)}."
        )
    return SentenceTransformerEncoder(model, device=device)


__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "ModelFingerprint",
    "SentenceTransformerEncoder",
    "load_encoder",
    "l2_normalize",
    "resolve_model",
]
