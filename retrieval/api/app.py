"""The HTTP service: FastAPI over one Retriever (the same path as the CLI).

Concurrency: one process, one Retriever, many requests. Blocking work (encoding, FAISS, SQLite)
runs in worker threads (``asyncio.to_thread``). The encoder serialises its calls with one lock; the
store lets searches share its index and gives writes the index alone (``index.locks``), so a
search sees a batch of upserts entirely or not at all. Single-text searches are gathered by a
``MicroBatcher`` into one encoder call. Run exactly one worker process: several would each hold
a copy of the index and diverge on writes.

Durability: a write is answered after its SQLite commit; a background task snapshots FAISS every
``snapshot_every_s`` seconds when something changed, and at shutdown. A snapshot that fails (a
full disk) is logged, shown in /stats and retried at the next tick. After a crash the next start
replays SQLite past the last snapshot. A read-only server holds no writer lock: the same task
picks up the commits of the folder's writer process instead.

Failures stay with their request: a micro-batch that fails is run again one request at a time,
so one bad text gets its 4xx and the rest of its batch their answers.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from index import StoreError
from index.errors import DiskFullError

from ..errors import TwinError
from ..images import ImageProblem
from ..retriever import Item, QueryResult, Retriever, describe
from ..review import GroupBook, Reviewer, TooFewVerdicts, UnknownItem
from ..validate import TEXT_PATTERN, text_problem
from .batcher import MicroBatcher
from .docs import mount_docs
from .images import MultipartToUpload, add_image_routes
from .limits import BodySizeLimit
from .metrics import Metrics
from .models import (
    DeleteResponse,
    ErrorOut,
    ItemOut,
    ItemsRequest,
    ItemsResponse,
    OutcomeOut,
    QueryOut,
    SearchRequest,
    SearchResponse,
    SnapshotOut,
    StatsOut,
    StatusOut,
)
from .page import mount_page
from .review import ReviewState, add_review_routes

log = logging.getLogger("twin.serve")


def _errors(*codes: int) -> dict:
    """OpenAPI entries for the 4xx answers a route can give, all shaped ``{"detail": ...}``."""
    meaning = {400: "The body is not JSON text (e.g. not UTF-8).",
               409: "Not possible now: too few verdicts, or the same work running already.",
               401: "Missing or wrong API key.", 403: "The server is read-only.", 404: "No such item.",
               413: "Too many texts or items, or a body too large.", 422: "A field failed validation.",
               507: "The disk is full; nothing of the write was kept."}
    return {code: {"model": ErrorOut, "description": meaning[code]} for code in codes}


@dataclass
class Settings:
    """Service limits and switches (the `twin serve` options)."""

    api_key: str | None = None
    read_only: bool = False
    max_texts: int = 64  #: texts per search request (413 above)
    max_items: int = 1000  #: items per upsert request (413 above)
    max_chars: int = 4000  #: characters per text (422 above)
    max_body_bytes: int | None = None  #: request body size (413 above; None: 2 MB, 48 MB for images)
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 2.0
    snapshot_every_s: float = 30.0
    cors_origins: list[str] = field(default_factory=list)


bearer = HTTPBearer(auto_error=False, description="Needed for writes when the server has an API key.")


def create_app(retriever: Retriever, settings: Settings | None = None, groups: GroupBook | None = None) -> FastAPI:
    """A FastAPI app serving ``retriever`` (``groups``: duplicate groups for the review page)."""
    settings = settings or Settings()
    review = ReviewState(Reviewer(retriever), groups)
    metrics = Metrics()
    snapshots = SnapshotState()
    batcher = MicroBatcher(lambda queries: _search_many(retriever, queries), settings.max_batch,
                           settings.max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await asyncio.to_thread(retriever.warm_up)  # load the model before /ready
        gc.collect()
        gc.freeze()  # the model's objects stay put: full collections no longer walk them
        if settings.batching:
            await batcher.start()
        upkeep = asyncio.create_task(_upkeep_loop(retriever, settings.snapshot_every_s, snapshots))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            upkeep.cancel()
            await batcher.stop()
            if not retriever.store.read_only:
                await asyncio.to_thread(snapshots.save, retriever)
            review.reviewer.close()

    app = FastAPI(title="twin", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Near-duplicate lookups: a siamese encoder and a FAISS index. Every 4xx answer "
                              "is JSON: `{\"detail\": ...}`.")
    app.state.ready = False
    mount_docs(app)
    mount_page(app)
    images = retriever.modality == "image"
    if images:
        app.add_middleware(MultipartToUpload)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes or (48_000_000 if images else 2_000_000))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    metrics.gauges["twin_index_items"] = ("Items in the index.", lambda: len(retriever))
    metrics.gauges["twin_microbatches"] = ("Micro-batches run since start.", lambda: batcher.batches)
    metrics.gauges["twin_microbatched_searches"] = ("Searches run in micro-batches since start.",
                                                    lambda: batcher.requests)
    metrics.gauges["twin_snapshot_failures"] = ("Failed snapshot tries since the last success.",
                                                lambda: snapshots.failures)
    metrics.gauges["twin_snapshot_last_success_seconds"] = ("Unix time of the last snapshot written (0: none).",
                                                            lambda: snapshots.saved_at)

    @app.middleware("http")
    async def record(request: Request, call_next):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe(request.method, getattr(route, "path", "unmatched"), response.status_code,
                        time.perf_counter() - start)
        return response

    @app.exception_handler(TwinError)
    @app.exception_handler(StoreError)
    async def unprocessable(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DiskFullError):
            return JSONResponse(status_code=507, content={"detail": str(exc)})
        if isinstance(exc, ImageProblem) and exc.too_large:
            return JSONResponse(status_code=413, content={"detail": str(exc)})
        if isinstance(exc, UnknownItem):
            return JSONResponse(status_code=404, content={"detail": str(exc)})
        if isinstance(exc, TooFewVerdicts):
            return JSONResponse(status_code=409, content={"detail": str(exc)})
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(UnicodeError)
    async def not_unicode(_: Request, exc: UnicodeError) -> JSONResponse:
        """A lone surrogate (``\\ud800``) that JSON allows but Unicode text does not."""
        return JSONResponse(status_code=422, content={"detail": "the body holds a string that is not valid Unicode "
                                                                "(an unpaired surrogate such as \\ud800)"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each failed field; the offending values are not echoed (a NaN or a lone
        surrogate could not be written as JSON)."""
        issues = [{"loc": [p if isinstance(p, int) else _printable(str(p)) for p in e.get("loc", ())],
                   "msg": _printable(str(e.get("msg", ""))), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": issues})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Every HTTP error as JSON; a 405 lists in ``Allow`` every method the path supports
        (FastAPI keeps one route a method, so its own 405 names only one of them)."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=headers)

    def read_only_check() -> None:
        """Writes are refused on a read-only server (403)."""
        if settings.read_only:
            raise HTTPException(403, "this server is read-only")

    def key_check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        """Writes need the API key when one is set (401), and a writable server (403)."""
        read_only_check()
        token = credentials.credentials if credentials else ""
        if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                headers={"WWW-Authenticate": "Bearer"})

    # The OpenAPI document asks for a bearer token only where the server has a key.
    writer = key_check if settings.api_key else read_only_check

    if images:
        add_image_routes(app, retriever, settings, writer, _errors)
    else:
        _add_text_routes(app, retriever, settings, writer, batcher)
    _add_item_routes(app, retriever, writer)
    add_review_routes(app, review, writer, _errors)
    _add_service_routes(app, retriever, settings, snapshots, metrics)
    return app


def _add_text_routes(app: FastAPI, retriever: Retriever, settings: Settings, writer, batcher) -> None:  # noqa: ANN001
    """Search and upsert with texts (an index of texts)."""

    def check_texts(texts: list[str], limit: int, what: str) -> None:
        if len(texts) > limit:
            raise HTTPException(413, f"{len(texts)} {what} in one request; the limit is {limit}")
        for n, text in enumerate(texts):
            problem = text_problem(text)  # the one rule, as the request models and the CLI apply it
            if problem:
                raise HTTPException(422, f"{what} {n} {problem}")
            if len(text) > settings.max_chars:
                raise HTTPException(422, f"{what} {n} has {len(text)} characters; the limit is {settings.max_chars}")

    async def search(texts: list[str], k: int, threshold: float | None, duplicates_only: bool) -> SearchResponse:
        check_texts(texts, settings.max_texts, "text")
        if settings.batching and len(texts) == 1:
            results = [await batcher.submit(_Query(texts[0], k, threshold, duplicates_only))]
        else:
            results = await asyncio.to_thread(retriever.search, texts, k, threshold, duplicates_only)
        return SearchResponse(results=[QueryOut(**r.to_dict()) for r in results])

    @app.post("/search", response_model=SearchResponse, tags=["search"], responses=_errors(400, 413, 422))
    async def search_post(body: SearchRequest) -> SearchResponse:
        """Nearest stored items of each text; ``duplicate`` is ``score > tau``."""
        return await search(body.texts, body.k, body.threshold, body.duplicates_only)

    @app.get("/search", response_model=SearchResponse, tags=["search"], responses=_errors(413, 422))
    async def search_get(q: str = Query(..., min_length=1, description="The query text.",
                                        json_schema_extra={"pattern": TEXT_PATTERN}),
                         k: int = Query(5, ge=1, le=100, description="Matches."),
                         threshold: float | None = Query(None, ge=-1, le=1, description="Overrides tau.")
                         ) -> SearchResponse:
        """Nearest stored items of one text."""
        return await search([q], k, threshold, False)

    @app.post("/items", response_model=ItemsResponse, tags=["items"], dependencies=[Depends(writer)],
              responses=_errors(400, 401, 403, 413, 422, 507))
    async def upsert(body: ItemsRequest) -> ItemsResponse:
        """Add or replace items, or (on_duplicate) only those that duplicate nothing stored; answered
        once they are durable."""
        check_texts([item.text for item in body.items], settings.max_items, "item")
        items = [Item(i.id, i.text, i.payload) for i in body.items]
        outcomes = await asyncio.to_thread(retriever.insert, items, body.on_duplicate)
        return ItemsResponse(ids=list(dict.fromkeys(o.id for o in outcomes if o.stored)),
                             items=[OutcomeOut(**o.to_dict()) for o in outcomes])


def _add_item_routes(app: FastAPI, retriever: Retriever, writer) -> None:  # noqa: ANN001
    """Read and delete stored items by id (either kind of index)."""

    @app.get("/items/{item_id:path}", response_model=ItemOut, tags=["items"], responses=_errors(404, 422))
    async def get_item(item_id: str) -> ItemOut:
        """One stored item."""
        item = await asyncio.to_thread(retriever.get, item_id)
        if item is None:
            raise HTTPException(404, f"no item {item_id!r}")
        return ItemOut(id=item.id, text=item.text, payload=item.payload)

    @app.delete("/items/{item_id:path}", response_model=DeleteResponse, tags=["items"],
                dependencies=[Depends(writer)], responses=_errors(401, 403, 404, 422, 507))
    async def delete_item(item_id: str) -> DeleteResponse:
        """Delete one item; answered once the delete is durable."""
        if not await asyncio.to_thread(retriever.delete, [item_id]):
            raise HTTPException(404, f"no item {item_id!r}")
        return DeleteResponse(deleted=item_id)


def _add_service_routes(app: FastAPI, retriever: Retriever, settings: Settings, snapshots: SnapshotState,
                        metrics: Metrics) -> None:
    """Liveness, readiness, facts and metrics."""

    @app.get("/health", response_model=StatusOut, tags=["service"])
    async def health() -> StatusOut:
        """The process is alive."""
        return StatusOut(status="alive")

    @app.get("/ready", response_model=StatusOut, tags=["service"], responses={503: {"model": StatusOut}})
    async def ready() -> StatusOut | JSONResponse:
        """Model and index are loaded."""
        if not app.state.ready:
            return JSONResponse(status_code=503, content={"status": "starting"})
        return StatusOut(status="ready")

    @app.get("/stats", response_model=StatsOut, tags=["service"])
    async def stats() -> StatsOut:
        """Count, index kind, model and tau."""
        facts = describe(retriever.store, retriever.tau)
        return StatsOut(count=facts["count"], kind=facts["kind"], built_kind=facts["built_kind"],
                        dimension=facts["dimension"], model=facts["encoder"], tau=facts["tau"],
                        read_only=settings.read_only, snapshot=snapshots.describe(retriever),
                        search=retriever.store.search_defaults, shards=facts["shards"],
                        modality=retriever.modality, writes_need_key=bool(settings.api_key))

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests, errors and latency by route; index size."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")


@dataclass(frozen=True)
class _Query:
    """One single-text search waiting in the micro-batcher."""

    text: str
    k: int
    threshold: float | None
    duplicates_only: bool


def _search_many(retriever: Retriever, queries: list[_Query]) -> list[QueryResult]:
    """One encoder call and one index search for a micro-batch; each query keeps its own k,
    threshold and filter."""
    texts = [q.text for q in queries]
    found = retriever.match(texts, retriever.encode_queries(texts), max(q.k for q in queries), threshold=1.0)
    results = []
    for query, result in zip(queries, found):
        tau = retriever.tau if query.threshold is None else query.threshold
        matches = [replace(m, duplicate=m.score > tau) for m in result.matches[: query.k]]
        if query.duplicates_only:
            matches = [m for m in matches if m.duplicate]
        results.append(QueryResult(query.text, matches))
    return results


class SnapshotState:
    """The last snapshot written and the last failure, for /stats, /metrics and the log."""

    def __init__(self) -> None:
        self.saved_at = 0.0
        self.failures = 0
        self.error: str | None = None
        self.error_at = 0.0

    def save(self, retriever: Retriever) -> bool:
        """Write a snapshot; a failure is logged and kept, never raised (the next tick retries)."""
        try:
            retriever.save()
        except Exception as exc:  # noqa: BLE001 - any failure: log it, show it, retry later
            self.failures += 1
            self.error, self.error_at = f"{type(exc).__name__}: {exc}", time.time()
            log.error("snapshot failed (try %d; writes stay durable in SQLite, retrying): %s",
                      self.failures, self.error)
            return False
        if self.failures:
            log.warning("snapshot written again after %d failed tries", self.failures)
        self.saved_at, self.failures = time.time(), 0
        return True

    def describe(self, retriever: Retriever) -> SnapshotOut:
        """The state as /stats shows it."""
        return SnapshotOut(last_saved_at=_iso(self.saved_at), last_error=self.error, last_error_at=_iso(self.error_at),
                           failures=self.failures, pending=retriever.store.dirty and not retriever.store.read_only)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of every route matching the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def _iso(timestamp: float) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds") if timestamp else None


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _upkeep_loop(retriever: Retriever, every_s: float, snapshots: SnapshotState) -> None:
    """A writer writes a FAISS snapshot now and then when writes happened (SQLite already has
    them); a reader picks up the writer's commits."""
    while True:
        await asyncio.sleep(every_s if not retriever.store.read_only else min(every_s, 2.0))
        if retriever.store.read_only:
            try:
                await asyncio.to_thread(retriever.store.refresh)
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded
                log.error("refresh from the index folder failed: %s", exc)
        elif retriever.store.dirty:
            await asyncio.to_thread(snapshots.save, retriever)
