"""What the fast backends share: tokenising like sentence-transformers, length-sorted batches,
the export cache folder, thread counts, and the base class that turns a compiled
(input_ids, attention_mask) -> sentence-embedding function into an `Encoder`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import require
from .base import ModelFingerprint, cap_texts, l2_normalize

log = logging.getLogger(__name__)

#: Bumped when the layout or the recipe of a cached export changes (older exports are redone).
EXPORT_FORMAT = 2  # 2: mixed-precision openvino-int8, MatMul-only onnx-int8
#: The precisions of a compiled backend ("<family>-int8", "<family>-fp32").
PRECISIONS = ("int8", "fp32")
#: Texts are tokenised this many at a time, so a huge catalogue never holds all token lists.
TOKENIZE_CHUNK = 8192


# --- tokenising and batching -------------------------------------------------------------


class Tokenizer:
    """The model's own (Hugging Face fast) tokenizer, truncating at the model's max_seq_length.

    Produces exactly the input ids sentence-transformers feeds the model, unpadded, so batches
    can be grouped by length before padding.
    """

    def __init__(self, hf_tokenizer, max_seq_length: int | None) -> None:
        self.hf = hf_tokenizer
        self.max_length = int(max_seq_length or getattr(hf_tokenizer, "model_max_length", 512))
        self.pad_id = int(hf_tokenizer.pad_token_id or 0)

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        return self.hf(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Group positions into batches of similar token length (shortest first).

    Each batch holds at most `batch_size` rows and, when `max_tokens` is given, at most
    `max_tokens` padded tokens (rows x longest row), so short texts get big batches and long
    texts small ones.

    Example:
        >>> [b.tolist() for b in length_sorted_batches([5, 2, 9, 3], batch_size=2)]
        [[1, 3], [0, 2]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        end = min(start + batch_size, n)
        if max_tokens is not None:
            # rows are sorted, so the last row of a batch is its longest
            while end - start > 1 and (end - start) * lengths[order[end - 1]] > max_tokens:
                end -= 1
        batches.append(order[start:end])
        start = end
    return batches


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, dtype=np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to (input_ids, attention_mask) arrays of the longest length."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=dtype)
    mask = np.zeros((len(seqs), width), dtype=dtype)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


# --- threads --------------------------------------------------------------------------------


def default_threads() -> int:
    """CPU threads for inference: `SEMREC_NUM_THREADS`, else the cores this process may use."""
    from ..settings import Settings  # here, not at the top: the encoders import without pydantic

    configured = Settings().num_threads
    if configured:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# --- the export cache ----------------------------------------------------------------------


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Folder holding exported models: `cache_dir`, else `$SEMREC_CACHE_DIR/encoders`, else
    `~/.cache/semrec/encoders`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from ..settings import Settings  # here, not at the top: the encoders import without pydantic

    configured = Settings().cache_dir
    base = Path(configured).expanduser() if configured else Path.home() / ".cache" / "semrec"
    return base / "encoders"


def export_dir(fingerprint: ModelFingerprint, backend: str, cache_dir: str | Path | None) -> Path:
    """`<cache root>/<weights fingerprint>-<backend>/`: one export per model weights and backend."""
    return cache_root(cache_dir) / f"{fingerprint.weights}-{backend}"


def cached_export(
    fingerprint: ModelFingerprint,
    backend: str,
    cache_dir: str | Path | None,
    build: Callable[[Path], dict],
) -> Path:
    """Return the folder of a finished export, building it with `build(tmp_folder)` if needed.

    `build` writes the model files into the folder it is given and returns extra metadata. The
    folder is filled under a temporary name and renamed into place, so a crash or a concurrent
    export never leaves a half-written model where a reader would pick it up.
    """
    target = export_dir(fingerprint, backend, cache_dir)
    meta_path = target / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if (
                meta.get("format") == EXPORT_FORMAT
                and meta.get("fingerprint", {}).get("weights") == fingerprint.weights
            ):
                return target
        except (OSError, ValueError):
            pass
        log.warning("Export in %s is stale or unreadable; exporting again.", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        log.info("Exporting %s for backend %r into %s (once per model)", fingerprint.name,
                 backend, target)
        extra = build(tmp)
        meta = {
            "format": EXPORT_FORMAT,
            "backend": backend,
            "fingerprint": fingerprint.to_dict(),
            **extra,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "meta.json").is_file():  # lost a race to nobody: re-raise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence converters that print progress (library code logs, never prints)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


# --- the shared encoder class --------------------------------------------------------------


class CompiledEncoder:
    """An `Encoder` over a compiled `(input_ids, attention_mask) -> embeddings` function, made
    from a cached export of the torch model.

    Subclasses set `family` (their backends are "<family>-int8" and "<family>-fp32") and
    `runtime` (the module of the `fast` extra they run on), and implement `_export` (write the
    model files of a precision into a folder), `_load` (open `self.export_dir` for inference) and
    `_infer` (a padded batch); they may override `_infer_one` (a single unpadded text: the
    latency path). Tokenisation, truncation, length sorting, progress and normalisation live
    here, so every fast backend treats texts alike. The fingerprint is the torch model's: same
    weights, same vector space.

    Args:
        reference: the torch encoder (`SentenceTransformerEncoder`) to export.
        precision: "int8" or "fp32".
        calibration_texts: texts of the catalogue, for a backend that calibrates its int8
            export on them (used at the first export only).
        cache_dir: the export cache (default: `cache_root()`).
        threads: CPU threads for inference (default: `default_threads()`).

    Example:
        >>> from semrec.encoders import load_encoder
        >>> enc = load_encoder(backend="onnx-int8")  # or "onnx-fp32", "openvino-int8", ...
        >>> enc.encode(["red running shoes"]).shape
        (1, 384)
    """

    backend = "compiled"
    family = "compiled"
    runtime = ""

    def __init__(
        self,
        reference,
        precision: str = "int8",
        *,
        calibration_texts: Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be 'int8' or 'fp32', got {precision!r}.")
        runtime = require(self.runtime, "fast")
        st = reference.model
        self.name: str = reference.name
        self.dim: int = reference.dim
        self._fingerprint: ModelFingerprint = reference.fingerprint
        self.tokenizer = Tokenizer(st.tokenizer, st.max_seq_length)
        self.threads = threads or default_threads()
        self._lock = threading.Lock()
        self.backend = f"{self.family}-{precision}"
        fp32_export = export_dir(self.fingerprint, f"{self.family}-fp32", cache_dir)
        self.export_dir = cached_export(
            self.fingerprint,
            self.backend,
            cache_dir,
            lambda folder: self._export(st, folder, precision, fp32_export, calibration_texts),
        )
        self._load(runtime)

    def _export(
        self,
        st_model,
        folder: Path,
        precision: str,
        fp32_export: Path,
        calibration_texts: Sequence[str] | None,
    ) -> dict:
        """Write the model files into `folder`; return metadata for `meta.json`. `fp32_export`
        is this family's fp32 export folder (an int8 export may start from it when it is made)."""
        raise NotImplementedError

    def _load(self, runtime) -> None:
        """Open the export in `self.export_dir` with the `runtime` module."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> ModelFingerprint:
        return self._fingerprint

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _infer_one(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._infer(input_ids, attention_mask)

    def _infer_batches(
        self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], out: np.ndarray
    ) -> Iterator[int]:
        """Run padded `(rows, input_ids, attention_mask)` batches, writing each result into
        `out[rows]`; yield each batch's size once it is handed over (for progress). This one
        runs them one after another; a backend may overlap them."""
        for rows, ids, mask in batches:
            out[rows] = self._infer(ids, mask)
            yield len(rows)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encode texts to an (n, dim) float32 array of unit-length rows (input order kept)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        from tqdm.auto import tqdm

        desc = f"encode ({self.backend})"
        with tqdm(total=len(texts), disable=not show_progress, desc=desc) as bar:
            for start in range(0, len(texts), TOKENIZE_CHUNK):
                with self._lock:  # a Hugging Face tokenizer must not be used by two threads at once
                    seqs = self.tokenizer(cap_texts(texts[start : start + TOKENIZE_CHUNK]))
                lengths = [len(s) for s in seqs]
                batches = (
                    (start + rows, *pad_batch([seqs[i] for i in rows], self.tokenizer.pad_id))
                    for rows in length_sorted_batches(lengths, batch_size)
                )
                with self._lock:
                    for done in self._infer_batches(batches, out):
                        bar.update(done)
        return l2_normalize(out)

    def encode_query(self, text: str) -> np.ndarray:
        """Encode one text to a (dim,) unit vector: no padding, no batching, no progress."""
        with self._lock:
            ids = np.asarray(self.tokenizer(cap_texts([text]))[0], dtype=np.int64)[None, :]
            vec = self._infer_one(ids, np.ones_like(ids))
        return l2_normalize(np.asarray(vec, dtype=np.float32))[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, backend={self.backend!r})"
