"""The plain sentence-transformers (PyTorch) encoder."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .base import ModelFingerprint, cap_texts, resolve_model, weights_digest

log = logging.getLogger(__name__)


class SentenceTransformerEncoder:
    """Encode with `sentence_transformers.SentenceTransformer` (fp32 on CPU, fp16/bf16 on GPU).

    Example:
        >>> enc = SentenceTransformerEncoder()          # the packaged all-MiniLM-L6-v2
        >>> enc.encode(["red running shoes"]).shape
        (1, 384)
    """

    backend = "torch"

    def __init__(self, model: str | Path | None = None, *, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.name, source = resolve_model(model)
        try:
            self.model = SentenceTransformer(source, device=device)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Could not load the sentence-transformers model {str(model)!r}: {exc}. "
                "Pass a local model folder, a model name available offline, or None for the "
                "packaged all-MiniLM-L6-v2."
            ) from exc
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise ConfigError(f"Model {self.name!r} does not report an embedding dimension.")
        self.dim = int(dim)

    @cached_property
    def fingerprint(self) -> ModelFingerprint:
        weights = weights_digest(self.model.state_dict().items())
        return ModelFingerprint(name=self.name, weights=weights, dim=self.dim)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encode texts to an (n, dim) float32 array of unit-length rows."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            cap_texts(list(texts)),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """Encode one text to a (dim,) unit vector."""
        return self.encode([text], batch_size=1)[0]
