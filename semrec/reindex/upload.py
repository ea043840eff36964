"""Uploads done right: batches sized by bytes and count, parallel streams, retries with
exponential backoff for transient errors only (validation errors are never retried)."""

from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
T = TypeVar("T")

#: HTTP statuses worth retrying: timeout, rate limit, server errors that pass.
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
#: gRPC status names worth retrying.
TRANSIENT_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})


class UploadConfig(BaseModel):
    """How points are written to a store.

    Args:
        max_points: the most points in one request.
        max_bytes: the most (estimated, JSON) bytes in one request; Qdrant's default limit is 32 MiB.
        streams: requests in flight at once (a server only; the embedded store writes in-process).
        retries: attempts after the first for a transient error (connection, timeout, 429, 5xx).
        backoff_s: the first wait; doubled after each attempt (with jitter), at most `max_backoff_s`.
        timeout_s: the client's request timeout (a server only).
    """

    model_config = ConfigDict(extra="forbid")

    max_points: int = Field(256, ge=1)
    max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    streams: int = Field(4, ge=1)
    retries: int = Field(5, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    max_backoff_s: float = Field(30.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)

    @classmethod
    def given(cls, **options: Any) -> "UploadConfig":
        """The defaults, with the options a command line gave (None: not given, the default stands).

        Example:
            >>> UploadConfig.given(streams=8, retries=None).retries == UploadConfig().retries
            True
        """
        return cls(**{k: v for k, v in options.items() if v is not None})


def point_bytes(vector: np.ndarray, payload: dict[str, Any]) -> int:
    """Estimated request bytes of one point: ~12 JSON characters per float, the payload's JSON."""
    return 64 + 12 * int(np.asarray(vector).size) + len(json.dumps(payload, ensure_ascii=False, default=str))


def byte_batches(vectors: np.ndarray, payloads: Sequence[dict], max_points: int, max_bytes: int) -> Iterator[slice]:
    """Consecutive slices with at most `max_points` points and `max_bytes` estimated bytes each
    (a single point larger than `max_bytes` goes alone).

    Example:
        >>> [s.stop for s in byte_batches(np.zeros((5, 2)), [{}] * 5, 2, 10_000)]
        [2, 4, 5]
    """
    start, size = 0, 0
    for i, (vector, payload) in enumerate(zip(vectors, payloads)):
        n = point_bytes(vector, payload)
        if i > start and (i - start >= max_points or size + n > max_bytes):
            yield slice(start, i)
            start, size = i, 0
        size += n
    if start < len(payloads):
        yield slice(start, len(payloads))


def is_transient(exc: BaseException) -> bool:
    """True for errors that may pass on a retry (connection, timeout, 429, 5xx, gRPC
    UNAVAILABLE...); False for validation and every other error."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_HTTP
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.RpcError
        try:
            return getattr(code(), "name", "") in TRANSIENT_GRPC
        except Exception:
            return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    # qdrant-client wraps transport failures (connection refused, reset, read timeout) in
    # ResponseHandlingException; httpx's are TransportError / TimeoutException.
    if names & {"ResponseHandlingException", "TransportError", "TimeoutException"}:
        return True
    return isinstance(exc, (ConnectionError, TimeoutError))


def with_retries(
    action: Callable[[], T],
    config: UploadConfig,
    what: str = "request",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `action`, retrying transient errors with exponential backoff and jitter."""
    delay = config.backoff_s
    for attempt in range(config.retries + 1):
        try:
            return action()
        except Exception as exc:
            if attempt >= config.retries or not is_transient(exc):
                raise
            wait = min(config.max_backoff_s, delay) * (0.5 + random.random() / 2)
            log.warning("%s failed (%s: %s); retry %d/%d in %.1fs", what, type(exc).__name__, exc, attempt + 1, config.retries, wait)
            sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")


class UploadingStore:
    """A `VectorStore` whose writes follow `UploadConfig`: upserts split by bytes and count and
    sent over parallel streams, every write retried on transient errors. Reads pass through.

    Example:
        >>> store = UploadingStore(QdrantStore("http://localhost:6333"), UploadConfig(streams=8))
    """

    def __init__(self, store: Any, config: UploadConfig | None = None) -> None:
        self.inner = store
        self.config = config or UploadConfig()
        streams = self.config.streams if getattr(store, "kind", "") == "qdrant" else 1
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="semrec-upload") if streams > 1 else None
        self.upserted = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict], **conditions: Any) -> None:
        """`conditions`: the store's `only_if` and `mode` (a conditional write retried after a
        lost acknowledgement is skipped by the store: its condition no longer holds)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        slices = list(byte_batches(vectors, payloads, self.config.max_points, self.config.max_bytes))

        def send(part: slice) -> None:
            with_retries(
                lambda: self.inner.upsert(name, list(ids[part]), vectors[part], list(payloads[part]), **conditions),
                self.config,
                f"upsert of {part.stop - part.start} points to {name!r}",
            )

        if self._pool is None or len(slices) == 1:
            for part in slices:
                send(part)
        else:
            for future in [self._pool.submit(send, part) for part in slices]:
                future.result()  # every stream acknowledged (or the first error raised)
        self.upserted += len(ids)

    def set_payload(self, name: str, ids: Sequence[str], payload: dict[str, Any], **conditions: Any) -> None:
        with_retries(lambda: self.inner.set_payload(name, ids, payload, **conditions), self.config, f"set_payload on {name!r}")

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with_retries(lambda: self.inner.delete(name, ids), self.config, f"delete from {name!r}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.inner.close()

