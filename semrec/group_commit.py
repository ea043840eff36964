"""Group commit: concurrent callers' writes applied together, one batch at a time.

The first caller to arrive becomes the leader and applies every request queued so far in one
call (its own first); callers arriving meanwhile queue. When its round is written the leader
returns to its own caller and hands the lead to the oldest queued caller, whose round takes
everything queued by then: nobody leads more than one round, so no caller waits behind a stream
of others. Nobody waits for a timer either: a batch is whatever queued while the previous one
was being written, so a lone caller pays nothing and many callers share one engine write. Each caller gets its own result, or its own exception: when a batch fails,
its requests are applied again one by one, so one bad request cannot fail the others.

Example:
    >>> commits = GroupCommit(lambda requests: [sum(r) for r in requests])
    >>> commits.submit([1, 2, 3])
    6
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

Request = TypeVar("Request")


class _Pending:
    __slots__ = ("request", "size", "signal", "finished", "leads", "result", "error")

    def __init__(self, request: Any, size: int) -> None:
        self.request = request
        self.size = size
        self.signal = threading.Event()  # set when finished, or when handed the lead
        self.finished = False
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Request]):
    """Apply concurrent requests in batches with `apply(requests) -> results` (one result per
    request, in order; a result that is an exception is raised to that request's caller).

    Args:
        apply: applies a batch of requests; called by one thread at a time.
        max_batch: a round takes queued requests until their sizes sum to at least this.
        size: the size of a request (default 1), e.g. its number of events.
    """

    def __init__(self, apply: Callable[[list[Request]], list[Any]], *, max_batch: int = 4096, size: Callable[[Request], int] | None = None) -> None:
        self.apply = apply
        self.max_batch = max_batch
        self.size = size or (lambda request: 1)
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False
        self._leader: int | None = None
        #: Rounds applied and requests in them (how much batching happened).
        self.rounds = 0
        self.requests = 0

    @property
    def queued(self) -> int:
        """Requests waiting for the next round."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether a round is being applied."""
        return self._leading

    def submit(self, request: Request) -> Any:
        """Apply `request` (with whatever else is queued) and return its result, or raise its error."""
        if self._leader == threading.get_ident():  # called from inside `apply`: no queueing behind itself
            result = self.apply([request])[0]
            if isinstance(result, BaseException):
                raise result
            return result
        mine = _Pending(request, self.size(request))
        with self._lock:
            self._queue.append(mine)
            if not self._leading:  # nobody leads, so the queue held nobody else: `mine` is first
                self._leading = mine.leads = True
        if not mine.leads:
            mine.signal.wait()  # finished in someone's round, or handed the lead
        if not mine.finished:
            self._lead()  # `mine` is the oldest queued request: this round applies it
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _lead(self) -> None:
        """Apply one round (the queue's head first), then hand the lead to the oldest caller
        still queued, or give it up."""
        self._leader = threading.get_ident()
        try:
            with self._lock:
                batch, total = [], 0
                while self._queue and (not batch or total + self._queue[0].size <= self.max_batch):
                    total += self._queue[0].size
                    batch.append(self._queue.pop(0))
            self._apply(batch)
        finally:
            self._leader = None
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.signal.set()
                else:
                    self._leading = False

    def _apply(self, batch: list[_Pending]) -> None:
        self.rounds += 1
        self.requests += len(batch)
        try:
            results = self.apply([p.request for p in batch])
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    pending.error = result
                else:
                    pending.result = result
        except BaseException as exc:  # noqa: BLE001 - handed to its caller
            if len(batch) == 1:
                batch[0].error = exc
            else:  # isolate the failing request: each is applied alone
                for pending in batch:
                    self._apply([pending])
                return
        for pending in batch:
            pending.finished = True
            pending.signal.set()
