"""The GPU path: pre-tokenised, length-bucketed bf16/fp16 batches, tokenisation overlapped with
GPU work.

sentence-transformers' own `encode` on a big GPU is bound by tokenisation and per-batch overhead.
Here worker threads tokenise chunks of texts, sort each chunk by token length, cut it into
batches under a token budget and pad them into (pinned) tensors, while the main thread feeds the
previous chunk's batches to the model; outputs stay on the device until the end. The pipeline runs
on any torch device (the tests run it on CPU in fp32).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._pipeline import Tokenizer, length_sorted_batches, pad_batch
from .base import ModelFingerprint, cap_texts

log = logging.getLogger(__name__)

#: Padded tokens per batch (rows x longest row): short item texts get large batches.
MAX_TOKENS_PER_BATCH = 65536
#: Rows per batch at most.
MAX_BATCH_ROWS = 4096
#: Texts tokenised per chunk (one chunk is tokenised while the previous one runs on the GPU).
CHUNK_TEXTS = 16384


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001  # pragma: no cover - broken torch install
        return False


def prepare_chunk(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_tokens: int = MAX_TOKENS_PER_BATCH,
    max_rows: int = MAX_BATCH_ROWS,
    pin_memory: bool = False,
):
    """Tokenise a chunk and cut it into length-bucketed, padded torch batches.

    Returns a list of (row positions in the chunk, input_ids, attention_mask) on the CPU.
    """
    import torch

    seqs = tokenizer(cap_texts(texts))
    lengths = [len(s) for s in seqs]
    batches = []
    for rows in length_sorted_batches(lengths, max_rows, max_tokens):
        ids, mask = pad_batch([seqs[i] for i in rows], tokenizer.pad_id)
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        if pin_memory:
            ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
        batches.append((torch.from_numpy(rows), ids_t, mask_t))
    return batches


class GpuEncoder:
    """Encode on a torch device in half precision with a pipelined input path.

    Args:
        reference: the fp32 `SentenceTransformerEncoder` (its weights are copied, not changed).
        device: "cuda" (default), "cuda:1", ... or "cpu" (tests).
        dtype: torch dtype; default bfloat16 on CUDA devices that support it, else float16,
            float32 on CPU.
        workers: tokenising threads, each with its own tokenizer copy (the fast tokenizer
            releases the GIL and is itself multi-threaded, so one is usually enough).

    Example:
        >>> from semrec.encoders import load_encoder
        >>> enc = load_encoder(backend="gpu")          # needs CUDA  # doctest: +SKIP
    """

    def __init__(
        self,
        reference,
        *,
        device: str = "cuda",
        dtype=None,
        workers: int = 1,
        max_tokens: int = MAX_TOKENS_PER_BATCH,
        chunk_texts: int = CHUNK_TEXTS,
    ) -> None:
        import torch

        self.name: str = reference.name
        self.dim: int = reference.dim
        self._fingerprint: ModelFingerprint = reference.fingerprint  # of the fp32 weights
        self.device = torch.device(device)
        if dtype is None:
            if self.device.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.float32
        self.dtype = dtype
        self.backend = f"gpu-{str(dtype).removeprefix('torch.')}"
        st = reference.model
        self.tokenizer = Tokenizer(st.tokenizer, st.max_seq_length)
        self.model = copy.deepcopy(st).to(device=self.device, dtype=dtype).eval()
        self._local = threading.local()
        self.workers = max(1, workers)
        self.max_tokens = max_tokens
        self.chunk_texts = chunk_texts

    @property
    def fingerprint(self) -> ModelFingerprint:
        return self._fingerprint

    def _prepare(self, texts: Sequence[str], pin_memory: bool):
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:  # a Hugging Face tokenizer must not be shared across threads
            tokenizer = Tokenizer(copy.deepcopy(self.tokenizer.hf), self.tokenizer.max_length)
            self._local.tokenizer = tokenizer
        return prepare_chunk(tokenizer, texts, max_tokens=self.max_tokens, pin_memory=pin_memory)

    def _forward(self, ids, mask):
        import torch

        with torch.inference_mode():
            features = {
                "input_ids": ids.to(self.device, non_blocking=True),
                "attention_mask": mask.to(self.device, non_blocking=True),
            }
            out = self.model(features)["sentence_embedding"].float()
            return torch.nn.functional.normalize(out, dim=-1)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encode texts to an (n, dim) float32 array of unit-length rows (input order kept).

        `batch_size` is accepted for the protocol; batches here are sized by `max_tokens`.
        """
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        pin = self.device.type == "cuda"
        out = torch.empty((len(texts), self.dim), dtype=torch.float32, device=self.device)
        starts = list(range(0, len(texts), self.chunk_texts))
        with ThreadPoolExecutor(self.workers, thread_name_prefix="semrec-tok") as pool, tqdm(
            total=len(texts), disable=not show_progress, desc=f"encode ({self.backend})"
        ) as bar:
            # keep chunks tokenising ahead of the one on the GPU
            ahead = self.workers + 1
            futures = [
                pool.submit(self._prepare, texts[s : s + self.chunk_texts], pin)
                for s in starts[:ahead]
            ]
            for i, start in enumerate(starts):
                if i + ahead < len(starts):
                    s = starts[i + ahead]
                    futures.append(pool.submit(self._prepare, texts[s : s + self.chunk_texts], pin))
                for rows, ids, mask in futures[i].result():
                    out[(rows + start).to(self.device)] = self._forward(ids, mask)
                    bar.update(len(rows))
                futures[i] = None  # free the chunk's tensors
        return out.cpu().numpy()

    def encode_query(self, text: str) -> np.ndarray:
        """Encode one text to a (dim,) unit vector (no threads, no padding)."""
        import torch

        ids = torch.tensor([self.tokenizer(cap_texts([text]))[0]], dtype=torch.long)
        return self._forward(ids, torch.ones_like(ids))[0].cpu().numpy()

    def __repr__(self) -> str:
        return f"GpuEncoder(name={self.name!r}, backend={self.backend!r}, device='{self.device}')"
