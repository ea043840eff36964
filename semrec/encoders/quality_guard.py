"""The quality guard: a fast backend is used only if its vectors match fp32 torch's on a sample.

Two checks, both on the same sample of texts:

* mean cosine between the fast and the fp32 vector of each text >= `MIN_MEAN_COSINE` (0.995);
* mean overlap of each text's top-10 neighbours (within the sample, itself excluded) between
  the two vector sets >= `MIN_TOP10_OVERLAP` (0.93): what ranking would see.

The sample is the catalogue's own texts when given (`sample_texts`), else the short item texts
shipped with semrec.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ._calibration_texts import CALIBRATION_TEXTS
from .base import Encoder

log = logging.getLogger(__name__)

MIN_MEAN_COSINE = 0.995
MIN_TOP10_OVERLAP = 0.93
#: The guard encodes at most this many sample texts (seeded draw), to keep loading quick.
MAX_GUARD_TEXTS = 512


@dataclass(frozen=True)
class QualityReport:
    """How closely a backend's vectors follow the fp32 reference on one sample."""

    backend: str
    texts: int
    mean_cosine: float
    min_cosine: float
    top10_overlap: float
    min_mean_cosine: float = MIN_MEAN_COSINE
    min_top10_overlap: float = MIN_TOP10_OVERLAP

    @property
    def passed(self) -> bool:
        return (
            self.mean_cosine >= self.min_mean_cosine
            and self.top10_overlap >= self.min_top10_overlap
        )

    def describe(self) -> str:
        return (
            f"backend {self.backend!r} on {self.texts} texts: mean cosine {self.mean_cosine:.4f} "
            f"(need >= {self.min_mean_cosine}), top-10 overlap {self.top10_overlap:.3f} "
            f"(need >= {self.min_top10_overlap})"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def guard_sample(texts: Sequence[str] | None, n: int = MAX_GUARD_TEXTS) -> list[str]:
    """Up to `n` distinct non-empty texts (seeded draw) from `texts`, else the shipped texts."""
    pool = list(dict.fromkeys(t for t in (texts or ()) if t and t.strip()))
    if len(pool) < 11:  # too few to have 10 neighbours each
        return list(CALIBRATION_TEXTS)
    return pool if len(pool) <= n else random.Random(0).sample(pool, n)


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's top-k neighbours (by dot product, itself excluded) that
    vector sets `a` and `b` agree on."""
    n = len(a)
    k = min(k, n - 1)
    if k < 1:
        return 1.0

    def neighbours(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argpartition(-sims, k - 1, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)]))


def compare(
    candidate: Encoder,
    reference: Encoder | np.ndarray,
    texts: Sequence[str],
    *,
    k: int = 10,
    min_mean_cosine: float = MIN_MEAN_COSINE,
    min_top10_overlap: float = MIN_TOP10_OVERLAP,
) -> QualityReport:
    """Measure `candidate` against `reference` (an encoder, or its vectors for `texts`)."""
    texts = list(texts)
    ref = reference if isinstance(reference, np.ndarray) else reference.encode(texts)
    got = candidate.encode(texts)
    cos = np.sum(ref * got, axis=1)
    return QualityReport(
        backend=getattr(candidate, "backend", type(candidate).__name__),
        texts=len(texts),
        mean_cosine=float(cos.mean()),
        min_cosine=float(cos.min()),
        top10_overlap=top_k_overlap(ref, got, k),
        min_mean_cosine=min_mean_cosine,
        min_top10_overlap=min_top10_overlap,
    )


def guarded(
    candidate: Encoder,
    reference: Encoder,
    sample_texts: Sequence[str] | None = None,
    *,
    warn: bool = True,
    reference_vectors: np.ndarray | None = None,
) -> tuple[Encoder, QualityReport]:
    """Return `candidate` if it passes the guard on the sample, else `reference` (with a warning).

    `reference_vectors` (the reference's vectors for `guard_sample(sample_texts)`) saves
    re-encoding the sample when several candidates are checked.

    Example:
        >>> enc, report = guarded(fast_encoder, torch_encoder, catalog_texts)  # doctest: +SKIP
    """
    texts = guard_sample(sample_texts)
    if reference_vectors is None or len(reference_vectors) != len(texts):
        reference_vectors = reference.encode(texts)
    report = compare(candidate, reference_vectors, texts)
    if report.passed:
        log.info("Quality guard passed: %s", report.describe())
        return candidate, report
    if not warn:  # the caller ("auto") tries other backends and warns if all fail
        log.warning("Quality guard rejected %s.", report.describe())
        return reference, report
    message = (
        f"Quality guard rejected {report.describe()}; using the fp32 torch backend instead. "
        "Pass backend='torch' to skip fast backends, or name a backend explicitly to use it "
        "unguarded."
    )
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return reference, report
