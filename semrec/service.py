"""The HTTP service (`semrec serve`): events in, recommendations out, for other services.

One `Recommender` per process, opened in the app's lifespan. Writes, searches and catalog
changes are plain functions that FastAPI runs on its thread pool, so requests run concurrently
(the model and the waits of the group commit release the GIL); the Recommender's write path is
what keeps concurrent writers correct (see `semrec.users.ProfileService`). Reads (recommendations,
similar items, profiles) on the embedded store run on the event loop itself: the embedded
engine holds the GIL for the whole call, so the thread pool would add its own cost (a third of
a recommendation's) and no concurrency. On a Qdrant server they wait on the network, so they
run on the thread pool there too. An embedded store is
owned by one process: run one service process per store folder, or use a Qdrant server to run
several.

Example:
    >>> app = create_app(ServiceSettings(store="shop-store"))   # uvicorn.run(app)
"""


import asyncio
import contextlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .errors import (
    ConcurrentWriteError,
    ConfigError,
    MissingExtraError,
    NotIndexedError,
    SemrecError,
    StoreLockedError,
    UnknownUserError,
    require,
)
from .settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)
access_log = logging.getLogger("semrec.access")

#: The most events one `POST /events` takes, and the longest search text.
MAX_EVENTS_PER_REQUEST = 10_000
MAX_QUERY_CHARS = 1_000
MAX_ITEMS_PER_REQUEST = 10_000


class ServiceSettings(BaseModel):
    """Where the service finds its store and model, and who may call it.

    Args:
        store / url: an embedded store folder, or a Qdrant server URL (one of them).
        qdrant_api_key: the key sent to a Qdrant server.
        api_key: when set, every request but /healthz and /readyz must send it
            (`X-API-Key: <key>` or `Authorization: Bearer <key>`); compared in constant time.
        model: sentence-transformers name or folder (None: the packaged default).
        background_updates: True (default): an event is acknowledged once the profile is
            stored; summaries and popularity catch up on background threads (see
            `RecommenderConfig`).
        refresh_every: seconds between checks (one `stat`) for a blue-green re-index of the
            embedded store made by another process; the service then switches to the new
            version (0: never; a Qdrant server's aliases switch by themselves).
    """

    model_config = ConfigDict(extra="forbid")

    store: str | None = None
    url: str | None = None
    qdrant_api_key: str | None = None
    api_key: str | None = None
    model: str | None = None
    device: str | None = None
    timeout: float = Field(Settings.model_fields["timeout"].default, gt=0)
    background_updates: bool = True
    refresh_every: float = Field(1.0, ge=0)


class EventIn(BaseModel):
    """One event as posted: who did what to which item, when (ISO-8601 or epoch seconds)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | int
    item_id: str | int
    kind: str = "view"
    ts: float | str | None = None
    weight: float = 1.0


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(..., max_length=MAX_EVENTS_PER_REQUEST)


class ItemsIn(BaseModel):
    """Catalog rows: item_id, name, and optionally category, tags, description and any field."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(..., min_length=1, max_length=MAX_ITEMS_PER_REQUEST)


class Metrics:
    """Prometheus metrics of one app (its own registry: several apps in one process, as in
    tests, do not clash)."""

    def __init__(self) -> None:
        prometheus = require("prometheus_client", "serve")
        self.registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter(
            "semrec_requests", "HTTP requests by route, method and status.", ["route", "method", "status"], registry=self.registry
        )
        self.latency = prometheus.Histogram(
            "semrec_request_seconds", "Request latency by route.", ["route", "method"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.events = prometheus.Counter("semrec_events_recorded", "Events recorded (duplicates excluded).", registry=self.registry)
        self.errors = prometheus.Counter("semrec_errors", "Error responses by kind.", ["kind"], registry=self.registry)
        self.conflicts = prometheus.Gauge(
            "semrec_write_conflicts", "Profile writes that lost a race and were re-applied.", registry=self.registry
        )
        self._text = prometheus.generate_latest

    def text(self) -> bytes:
        return self._text(self.registry)


def model_threads(settings: ServiceSettings) -> int | None:
    """The model's CPU threads in the service: `SEMREC_NUM_THREADS` if set; with background
    updates, every usable core but one, so that encoding summaries in the background never takes
    the core requests are answered on (on 2 cores: single events 107 -> 189/s, RESULTS.md §7);
    else None (every core)."""
    from .encoders import default_threads  # SEMREC_NUM_THREADS, else the usable cores

    if Settings().num_threads or not settings.background_updates:
        return Settings().num_threads
    return max(1, default_threads() - 1)


def open_recommender(settings: ServiceSettings):
    """The Recommender the service serves (store opened first: a locked store fails fast)."""
    from .encoders import load_encoder
    from .recommender import Recommender, RecommenderConfig
    from .store import open_store

    if (settings.store is None) == (settings.url is None):
        raise ConfigError("Give the service a store folder (--store) or a Qdrant server (--url), one of them.")
    if settings.url:
        store = open_store(url=settings.url, api_key=settings.qdrant_api_key, timeout=max(1.0, settings.timeout))
    else:
        store = open_store(settings.store)
    try:
        config = RecommenderConfig(background_updates=settings.background_updates)
        return Recommender(store, load_encoder(settings.model, device=settings.device, threads=model_threads(settings)), config)
    except BaseException:
        store.close()
        raise


def create_app(settings: ServiceSettings | None = None, recommender: Any = None):
    """The FastAPI app. With `recommender`, serve that one (the caller closes it); else open
    one from `settings` when the app starts and close it when it stops."""
    fastapi = require("fastapi", "serve")
    from fastapi import Body, Depends, Query, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from .profiles import make_event

    settings = settings or ServiceSettings()
    metrics = Metrics()
    state: dict[str, Any] = {"rec": recommender}
    #: Requests that use the store from the thread pool (writes, searches): shutdown waits for
    #: them, and a version switch holds new ones back until it is done.
    gate = _Gate()

    async def follow_switches(recommender) -> None:
        """Follow a blue-green re-index of the embedded store made by another process (`semrec
        reindex --rebuild`): requests on the thread pool finish and new ones wait, background
        updates catch up, then the store switches on the event loop (so no read runs meanwhile)
        and replays the events recorded for the new version during the rebuild."""
        while True:
            await asyncio.sleep(settings.refresh_every)
            if not recommender.switch_pending():
                continue
            gate.close()
            try:
                await run_in_threadpool(gate.wait_idle, None)
                await run_in_threadpool(recommender.wait_for_background, 60.0)
                if recommender.refresh():
                    log.info("the service now serves store version %s", recommender.store.version)
            except Exception:  # noqa: BLE001 - keep serving the version open; try again later
                log.exception("could not follow the store's switch; still serving version %s", recommender.store.version)
            finally:
                gate.reopen()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        owned = state["rec"] is None
        if owned:
            state["rec"] = open_recommender(settings)
        follower = None
        if settings.refresh_every and state["rec"].store.kind == "edge":
            follower = asyncio.create_task(follow_switches(state["rec"]))
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            gate.wait_idle()  # graceful shutdown: in-flight writes finish before the store closes
            if owned:
                state["rec"].close()
            state["rec"] = None

    app = fastapi.FastAPI(
        title="semrec",
        version=_version(),
        summary="Semantic recommendations: events in, recommendations out.",
        lifespan=lifespan,
    )

    def rec():
        found = state["rec"]
        if found is None:
            raise _HttpError(503, "not_ready", "The service is starting or stopping; try again shortly.")
        return found

    async def read(work: Callable[[Any], T]) -> T:
        """`work(recommender)` for a read: on the event loop on the embedded store (its engine
        holds the GIL throughout: a thread buys nothing), on the thread pool on a Qdrant server
        (the call waits on the network)."""
        recommender = rec()
        if recommender.store.kind == "edge":
            return work(recommender)
        return await run_in_threadpool(work, recommender)

    async def authorised(request: Request) -> None:
        if not settings.api_key:
            return
        sent = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization", "")
        if not sent and auth.lower().startswith("bearer "):
            sent = auth[7:].strip()
        if not hmac.compare_digest(sent.encode(), settings.api_key.encode()):
            raise _HttpError(401, "unauthorised", "Missing or wrong API key; send it as the X-API-Key header.")

    # dependencies that do not block are `async def`: a plain `def` would cost each request a
    # trip through the thread pool per dependency
    guarded = [Depends(authorised)]

    app.add_middleware(_AccessLog, metrics=metrics)

    @app.exception_handler(_HttpError)
    async def http_error(request: Request, exc: _HttpError):
        return _error(request, metrics, exc.status, exc.kind, exc.message)

    @app.exception_handler(SemrecError)
    async def semrec_error(request: Request, exc: SemrecError):
        status, kind = _STATUS.get(type(exc), None) or next(
            (v for t, v in _STATUS.items() if isinstance(exc, t)), (422, "invalid")
        )
        return _error(request, metrics, status, kind, str(exc))

    @app.exception_handler(fastapi.exceptions.RequestValidationError)
    async def invalid_request(request: Request, exc):
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "?", "problem": "invalid"}
        message = f"{first['field']}: {first['problem']}."
        return _error(request, metrics, 422, "invalid", message, details=problems)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("request %s failed", getattr(request.state, "request_id", "?"))
        return _error(request, metrics, 500, "internal", "Internal error; the request id is in the logs.")

    async def filter_param(filter: str | None = Query(None, description='JSON, e.g. {"category": "Kitchen", "price": {"lt": 50}}')):
        return _json_object("filter", filter, '{"category": "Kitchen"}')

    async def rules_param(rules: str | None = Query(None, description='JSON RankingRules, e.g. {"boost": {"in_stock": 0.1}, "pin": ["el-001"]}')):
        return _json_object("rules", rules, '{"boost": {"in_stock": 0.1}}')

    async def negatives_param(negative: list[str] | None = Query(None, description="Item ids to push away (repeat the parameter).")):
        return negative or None

    async def k_param(k: int = Query(10, ge=1, le=1000, description="How many results (1-1000).")) -> int:
        return k

    # health --------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz():
        """The store is open and the model loaded."""
        found = state["rec"]
        if found is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        with gate.held():
            return {
                "status": "ready", "store": found.store.kind, "version": getattr(found.store, "version", None),
                "items": found.n_items, "model": found.encoder.name,
            }

    @app.get("/metrics", tags=["health"], dependencies=guarded)
    def prometheus_metrics():
        """Prometheus text format: requests and latency by route, events recorded, errors."""
        if state["rec"] is not None:
            metrics.conflicts.set(state["rec"].write_conflicts)
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # events and users --------------------------------------------------------------------------
    @app.post("/events", tags=["users"], dependencies=guarded)
    def post_events(body: EventIn | EventsIn | list[EventIn] = Body(...)) -> dict[str, Any]:
        """Record one event, `{"events": [...]}` or a list; each is answered in order with
        "recorded", "duplicate" (already stored), or "rejected" and the reason."""
        given = body.events if isinstance(body, EventsIn) else body if isinstance(body, list) else [body]
        if len(given) > MAX_EVENTS_PER_REQUEST:
            raise _HttpError(413, "too_large", f"{len(given)} events in one request; send at most {MAX_EVENTS_PER_REQUEST}.")
        results: list[dict[str, Any]] = [{} for _ in given]
        valid, where = [], []
        for n, event in enumerate(given):
            try:
                valid.append(make_event(event.user_id, event.item_id, event.kind, event.ts, event.weight))
                where.append(n)
            except ConfigError as exc:
                results[n] = {"status": "rejected", "reason": str(exc)}
        if valid:
            with gate.held():
                report = rec().record_events(valid, on_unknown_item="skip")
            metrics.events.inc(report.events)
            for n, outcome in zip(where, report.outcomes):
                results[n] = (
                    {"status": "rejected", "reason": f"item {given[n].item_id!r} is not in the catalog; index it first (PUT /items)."}
                    if outcome == "unknown_item" else {"status": outcome}
                )
        counts = {s: sum(r["status"] == s for r in results) for s in ("recorded", "duplicate", "rejected")}
        return {**counts, "results": results}

    @app.get("/users/{user_id}", tags=["users"], dependencies=guarded)
    async def get_user(user_id: str) -> dict[str, Any]:
        """The stored profile: history, every item seen, favourite categories and tags."""
        profile = await read(lambda r: r.profile(user_id))
        if profile is None:
            raise _HttpError(404, "not_found", f"User {user_id!r} has no profile; POST /events for them first.")
        return profile.model_dump(exclude={"event_keys"})

    @app.delete("/users/{user_id}", tags=["users"], dependencies=guarded)
    def delete_user(user_id: str) -> dict[str, Any]:
        """Erase a user: profile, vector, history and their share of popularity."""
        with gate.held():
            erased = rec().forget_user(user_id)
        if not erased:
            raise _HttpError(404, "not_found", f"User {user_id!r} has no profile (nothing to erase).")
        return {"erased": user_id}

    @app.get("/users/{user_id}/recommendations", tags=["recommendations"], dependencies=guarded)
    async def recommendations(
        user_id: str,
        k: int = Depends(k_param),
        filter: dict | None = Depends(filter_param),
        diversity: float | None = Query(None, ge=0, le=1, description="MMR trade-off, 0 = pure relevance."),
        exclude_seen: bool = Query(True),
        negatives: list[str] | None = Depends(negatives_param),
        rules: dict | None = Depends(rules_param),
    ) -> dict[str, Any]:
        """The top-k items for a user (unknown users get the most popular items); `negative`
        item ids are left out and their neighbours pushed down; `rules` boost, decay, pin, hide."""
        results = await read(lambda r: r.recommend(
            user_id, k=k, filter=filter, exclude_seen=exclude_seen, diversity=diversity, negatives=negatives, rules=rules
        ))
        return {"user_id": user_id, "results": _rows(results)}

    # items -------------------------------------------------------------------------------------
    @app.get("/items/{item_id}/similar", tags=["recommendations"], dependencies=guarded)
    async def similar(
        item_id: str,
        k: int = Depends(k_param),
        filter: dict | None = Depends(filter_param),
        negatives: list[str] | None = Depends(negatives_param),
        rules: dict | None = Depends(rules_param),
    ) -> dict[str, Any]:
        """Items like this one."""
        results = await read(lambda r: r.similar(item_id, k=k, filter=filter, negatives=negatives, rules=rules))
        return {"item_id": item_id, "results": _rows(results)}

    @app.get("/search", tags=["recommendations"], dependencies=guarded)
    def search(
        q: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS, description="Words describing items."),
        k: int = Depends(k_param),
        filter: dict | None = Depends(filter_param),
        rules: dict | None = Depends(rules_param),
    ) -> dict[str, Any]:
        """Items closest to a text."""
        with gate.held():
            return {"q": q, "results": _rows(rec().search(q, k=k, filter=filter, rules=rules))}

    @app.put("/items", tags=["items"], dependencies=guarded)
    def put_items(body: ItemsIn) -> dict[str, Any]:
        """Add or replace catalog items (same validation as `index_items`: bad rows come back
        with reasons, the good ones are indexed)."""
        import pandas as pd

        with gate.held():
            report = rec().index_items(pd.DataFrame(body.items))
        rejected = [{"row": r.row, "item_id": r.item_id, "reason": r.reason} for r in report.rejected]
        return {"indexed": report.indexed, "rejected": rejected}

    @app.delete("/items/{item_id}", tags=["items"], dependencies=guarded)
    def delete_item(item_id: str) -> dict[str, Any]:
        """Remove an item from the catalog."""
        with gate.held():
            deleted = rec().delete_items([item_id])
        if not deleted:
            raise _HttpError(404, "not_found", f"Item {item_id!r} is not in the catalog.")
        return {"deleted": item_id}

    app.state.metrics = metrics
    return app


def app_from_environment():
    """The app for each uvicorn worker process (`semrec serve --workers N`, Qdrant server only)."""
    return create_app(ServiceSettings.model_validate_json(os.environ["SEMREC_SERVICE_SETTINGS"]))


class _HttpError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


#: semrec errors as HTTP answers (the first matching class wins).
_STATUS: dict[type, tuple[int, str]] = {
    NotIndexedError: (404, "not_found"),
    UnknownUserError: (404, "not_found"),
    ConcurrentWriteError: (409, "conflict"),
    StoreLockedError: (503, "unavailable"),
    MissingExtraError: (501, "not_installed"),
    ConfigError: (422, "invalid"),
}


class _AccessLog:
    """ASGI middleware: a request id (taken from X-Request-ID or made, returned as X-Request-ID),
    one JSON access-log line and the request metrics per request. Written against ASGI itself
    rather than `@app.middleware("http")`, which costs every request an extra task and stream."""

    def __init__(self, app, metrics: "Metrics") -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent_id = next((value for key, value in scope["headers"] if key == b"x-request-id"), b"")
        request_id = sent_id.decode("latin-1") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path, scope["method"]).observe(seconds)
            access_log.info(json.dumps({
                "request_id": request_id, "method": scope["method"], "route": path, "path": scope["path"],
                "status": status, "ms": round(seconds * 1000, 2),
            }))


def _error(request, metrics: Metrics, status: int, kind: str, message: str, details: Any = None):
    from fastapi.responses import JSONResponse

    metrics.errors.labels(kind).inc()
    body = {"error": kind, "message": message, "request_id": getattr(request.state, "request_id", None)}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def _rows(results) -> list[dict[str, Any]]:
    return [
        {
            "item_id": r.item_id, "score": round(float(r.score), 6), "name": r.name, "category": r.category,
            "tags": r.tags, "reason": r.reason, "score_kind": r.score_kind, "fields": r.fields,
        }
        for r in results
    ]


def _json_object(name: str, text: str | None, example: str) -> dict | None:
    """A query parameter holding a JSON object (None when absent); a 422 naming it otherwise."""
    if text is None or not text.strip():
        return None
    try:
        spec = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise _HttpError(422, "invalid", f"{name} {text!r} is not JSON ({exc}); expected e.g. {example}.") from None
    if not isinstance(spec, dict):
        raise _HttpError(422, "invalid", f"{name} {text!r} must be a JSON object such as {example}.")
    return spec


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _version() -> str:
    from . import __version__

    return __version__


class _Gate:
    """Requests in progress on the thread pool: shutdown waits for them to finish, and a version
    switch closes the gate (new ones wait) until the running ones have finished."""

    def __init__(self) -> None:
        self._count = 0
        self._closed = False
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._idle:
            self._idle.wait_for(lambda: not self._closed)
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    def close(self) -> None:
        with self._idle:
            self._closed = True

    def reopen(self) -> None:
        with self._idle:
            self._closed = False
            self._idle.notify_all()

    def wait_idle(self, timeout: float | None = 60.0) -> None:
        """Wait until no request holds the gate (`timeout` None: as long as that takes)."""
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0, timeout)
