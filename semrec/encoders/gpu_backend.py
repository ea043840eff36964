"""The GPU path: pre-tokenised, length-bucketed bf16/fp16 batches, tokenisation overlapped with
GPU work.

sentence-transformers' own `encode` on a big GPU is bound by tokenisation and per-batch overhead.
Here tokenisation runs ahead of the GPU, in worker processes when the machine has the cores:
each worker tokenises a chunk of texts, sorts it by token length and cuts it into padded batches
under a token budget, while the main process feeds earlier chunks to the model; outputs stay on
the device until the end.

Why processes: the Rust tokenizer runs on all cores, but the Python around it (building the
id lists, sorting, padding) runs on one. On a 2-core machine (benchmarks/RESULTS.md section 3)
one worker process made 10-14k texts/s and two 18-27k/s, while one thread of this process, the
tokenizer on both cores, made 14-21k/s: the serial part alone costs about 20-50 us a text, so
threads could not pass roughly 20-55k texts/s on any number of cores, well below what one big
GPU encodes. Worker processes (forked, like torch's DataLoader workers) scale with the cores.

The pipeline runs on any torch device (the tests run it on CPU in fp32).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import multiprocessing
import os
import threading
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..errors import SemrecError
from ._pipeline import Tokenizer, default_threads, length_sorted_batches, pad_batch
from .base import ModelFingerprint, cap_texts

log = logging.getLogger(__name__)

#: Padded tokens per batch (rows x longest row): short item texts get large batches.
MAX_TOKENS_PER_BATCH = 65536
#: Rows per batch at most.
MAX_BATCH_ROWS = 4096
#: Texts tokenised per chunk (chunks are tokenised ahead of the one on the GPU).
CHUNK_TEXTS = 4096
#: Worker processes are used only on machines with at least this many usable cores.
MIN_CORES_FOR_WORKERS = 4
#: At most this many tokenising worker processes.
MAX_WORKERS = 32


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001  # pragma: no cover - broken torch install
        return False


def chunk_batches(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_tokens: int = MAX_TOKENS_PER_BATCH,
    max_rows: int = MAX_BATCH_ROWS,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Tokenise a chunk and cut it into length-bucketed, padded batches.

    Returns a list of (row positions in the chunk, input_ids, attention_mask) numpy arrays.
    """
    seqs = tokenizer(cap_texts(texts))
    lengths = [len(s) for s in seqs]
    return [
        (rows, *pad_batch([seqs[i] for i in rows], tokenizer.pad_id))
        for rows in length_sorted_batches(lengths, max_rows, max_tokens)
    ]


def default_workers() -> int:
    """Tokenising worker processes: all usable cores (`default_threads()`) but one, the one
    feeding the GPU; none (a thread of this process) on small machines or without `fork`."""
    cores = default_threads()
    if cores < MIN_CORES_FOR_WORKERS or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    return min(cores - 1, MAX_WORKERS)


# --- worker processes -----------------------------------------------------------------------

_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _worker_chunk(texts: list[str], max_tokens: int, max_rows: int):
    assert _worker_tokenizer is not None, "worker not initialised"
    return chunk_batches(_worker_tokenizer, texts, max_tokens=max_tokens, max_rows=max_rows)


@contextlib.contextmanager
def _forking_tokenizers() -> Iterator[None]:
    """Fork with the Rust tokenizer single-threaded in the children.

    A child forked after the parent's tokenizer used its thread pool must not use that pool (it
    would deadlock). TOKENIZERS_PARALLELISM=false, set for the fork only, makes the children
    tokenise on their own thread (some tokenizers versions otherwise warn on stderr).
    """
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns on any fork of a threaded process; the children only tokenise
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def start_worker_pool(tokenizer: Tokenizer, workers: int) -> ProcessPoolExecutor:
    """`workers` forked processes, each holding a copy of `tokenizer`, all started now."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(tokenizer,),
    )
    with _forking_tokenizers():
        pool.submit(os.getpid).result()  # a fork-context pool starts all its workers at once
    return pool


class GpuEncoder:
    """Encode on a torch device in half precision with a pipelined input path.

    Args:
        reference: the fp32 `SentenceTransformerEncoder` (its weights are copied, not changed).
        device: "cuda" (default), "cuda:1", ... or "cpu" (tests).
        dtype: torch dtype; default bfloat16 on CUDA devices that support it, else float16,
            float32 on CPU.
        workers: tokenising worker processes; None picks `default_workers()` (all cores but
            one, on machines with at least 4); 0 tokenises in one thread of this process. The
            workers start on the first encode of more than one chunk and stay until `close()`.

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
        workers: int | None = None,
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
        self._tokenizer_lock = threading.Lock()
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self.max_tokens = max_tokens
        self.chunk_texts = chunk_texts
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def fingerprint(self) -> ModelFingerprint:
        return self._fingerprint

    def _thread_chunk(self, texts: Sequence[str]):
        with (
            self._tokenizer_lock
        ):  # a Hugging Face tokenizer must not be used by two threads at once
            return chunk_batches(self.tokenizer, texts, max_tokens=self.max_tokens)

    def _worker_pool(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = start_worker_pool(self.tokenizer, self.workers)
            return self._pool

    def _chunks(self, texts: list[str], pool: Executor) -> Iterator[tuple[int, list]]:
        """(start, batches) for each chunk of `texts` in order, prepared ahead on `pool`."""
        if isinstance(pool, ProcessPoolExecutor):
            ahead = 2 * self.workers

            def submit(start: int):
                chunk = texts[start : start + self.chunk_texts]
                return pool.submit(_worker_chunk, chunk, self.max_tokens, MAX_BATCH_ROWS)
        else:
            ahead = 2

            def submit(start: int):
                return pool.submit(self._thread_chunk, texts[start : start + self.chunk_texts])

        starts = iter(range(0, len(texts), self.chunk_texts))
        try:
            pending = deque((s, submit(s)) for s in itertools.islice(starts, ahead))
            while pending:
                start, future = pending.popleft()
                following = next(starts, None)
                if following is not None:
                    pending.append((following, submit(following)))
                yield start, future.result()
        except BrokenProcessPool as exc:
            self.close()
            raise SemrecError(
                f"A tokenising worker process of the {self.backend} encoder died (killed, or "
                "out of memory); nothing was encoded. Its worker pool was reset: call encode "
                "again, or create the encoder with fewer workers (workers=0 tokenises in this "
                "process)."
            ) from exc

    def embed_batch(self, ids, mask):
        """Unit vectors (on the device, float32) of one padded batch of token ids."""
        import torch

        with torch.inference_mode():
            features = {
                "input_ids": ids.to(self.device, non_blocking=True),
                "attention_mask": mask.to(self.device, non_blocking=True),
            }
            out = self.model(features)["sentence_embedding"].float()
            return torch.nn.functional.normalize(out, dim=-1)

    def batches(self, texts: Sequence[str]):
        """Padded, length-bucketed batches of `texts` as CPU tensors (pinned on CUDA), made
        ahead of the caller: (positions in `texts`, input_ids, attention_mask) tuples.

        More than one chunk of texts is tokenised by the worker processes, if any.
        """
        import torch

        texts = list(texts)
        pin = self.device.type == "cuda"
        use_workers = self.workers > 0 and len(texts) > self.chunk_texts
        with contextlib.ExitStack() as stack:
            pool = (
                self._worker_pool()
                if use_workers
                else stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="semrec-tok"))
            )
            for start, chunk in self._chunks(texts, pool):
                for rows, ids, mask in chunk:
                    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
                    if pin:
                        ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
                    yield torch.from_numpy(rows + start), ids_t, mask_t

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
        out = torch.empty((len(texts), self.dim), dtype=torch.float32, device=self.device)
        with tqdm(
            total=len(texts), disable=not show_progress, desc=f"encode ({self.backend})"
        ) as bar:
            for rows, ids, mask in self.batches(texts):
                out[rows.to(self.device)] = self.embed_batch(ids, mask)
                bar.update(len(rows))
        return out.cpu().numpy()

    def encode_query(self, text: str) -> np.ndarray:
        """Encode one text to a (dim,) unit vector (no workers, no padding)."""
        import torch

        with self._tokenizer_lock:
            ids = torch.tensor([self.tokenizer(cap_texts([text]))[0]], dtype=torch.long)
        return self.embed_batch(ids, torch.ones_like(ids))[0].cpu().numpy()

    def close(self) -> None:
        """Stop the tokenising worker processes (they restart on the next large encode)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return (
            f"GpuEncoder(name={self.name!r}, backend={self.backend!r}, device='{self.device}', "
            f"workers={self.workers})"
        )
