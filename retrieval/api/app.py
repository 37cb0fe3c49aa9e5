"""The HTTP service: FastAPI over one Retriever (the same path as the CLI).

Concurrency: one process, one Retriever, many requests. Blocking work (encoding, FAISS, SQLite)
runs in worker threads (``asyncio.to_thread``). The encoder serialises its calls with one lock; the
store lets searches share its index and gives writes the index alone (``index.locks``), so a
search sees a batch of upserts entirely or not at all. Single-text searches are gathered by a
``MicroBatcher`` into one encoder call. Run exactly one worker process: several would each hold
a copy of the index and diverge on writes.

Durability: a write is answered after its SQLite commit; a background task snapshots FAISS every
``snapshot_every_s`` seconds when something changed, and at shutdown. After a crash the next start
replays SQLite past the last snapshot.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from index import StoreError

from ..errors import TwinError
from ..retriever import Item, QueryResult, Retriever, describe
from .batcher import MicroBatcher
from .limits import BodySizeLimit
from .metrics import Metrics
from .models import (
    DeleteResponse,
    ItemOut,
    ItemsRequest,
    ItemsResponse,
    QueryOut,
    SearchRequest,
    SearchResponse,
    StatsOut,
    StatusOut,
)


@dataclass
class Settings:
    """Service limits and switches (the `twin serve` options)."""

    api_key: str | None = None
    read_only: bool = False
    max_texts: int = 64  #: texts per search request (413 above)
    max_items: int = 1000  #: items per upsert request (413 above)
    max_chars: int = 4000  #: characters per text (422 above)
    max_body_bytes: int = 2_000_000  #: request body size (413 above)
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 2.0
    snapshot_every_s: float = 30.0
    cors_origins: list[str] = field(default_factory=list)


bearer = HTTPBearer(auto_error=False, description="Needed for writes when the server has an API key.")


def create_app(retriever: Retriever, settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving ``retriever``."""
    settings = settings or Settings()
    metrics = Metrics()
    batcher = MicroBatcher(lambda queries: _search_many(retriever, queries), settings.max_batch,
                           settings.max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await asyncio.to_thread(retriever.encode_queries, ["warm up"])  # load the model before /ready
        gc.collect()
        gc.freeze()  # the model's objects stay put: full collections no longer walk them
        if settings.batching:
            await batcher.start()
        snapshots = asyncio.create_task(_snapshot_loop(retriever, settings.snapshot_every_s))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            snapshots.cancel()
            await batcher.stop()
            await asyncio.to_thread(retriever.save)

    app = FastAPI(title="twin", version="0.1.0", lifespan=lifespan,
                  description="Near-duplicate lookups: a siamese encoder and a FAISS index.")
    app.state.ready = False
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    metrics.gauges["twin_index_items"] = ("Items in the index.", lambda: len(retriever))
    metrics.gauges["twin_microbatches"] = ("Micro-batches run since start.", lambda: batcher.batches)
    metrics.gauges["twin_microbatched_searches"] = ("Searches run in micro-batches since start.",
                                                    lambda: batcher.requests)

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
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    def writer(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        """Writes: refused on a read-only server (403), need the API key when one is set (401)."""
        if settings.read_only:
            raise HTTPException(403, "this server is read-only")
        if settings.api_key:
            token = credentials.credentials if credentials else ""
            if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
                raise HTTPException(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                    headers={"WWW-Authenticate": "Bearer"})

    def check_texts(texts: list[str], limit: int, what: str) -> None:
        if len(texts) > limit:
            raise HTTPException(413, f"{len(texts)} {what} in one request; the limit is {limit}")
        for n, text in enumerate(texts):
            if not text.strip():
                raise HTTPException(422, f"{what} {n} is empty")
            if len(text) > settings.max_chars:
                raise HTTPException(422, f"{what} {n} has {len(text)} characters; the limit is {settings.max_chars}")

    async def search(texts: list[str], k: int, threshold: float | None, duplicates_only: bool) -> SearchResponse:
        check_texts(texts, settings.max_texts, "text")
        if settings.batching and len(texts) == 1:
            results = [await batcher.submit(_Query(texts[0], k, threshold, duplicates_only))]
        else:
            results = await asyncio.to_thread(retriever.search, texts, k, threshold, duplicates_only)
        return SearchResponse(results=[QueryOut(**r.to_dict()) for r in results])

    @app.post("/search", response_model=SearchResponse, tags=["search"])
    async def search_post(body: SearchRequest) -> SearchResponse:
        """Nearest stored items of each text; ``duplicate`` is ``score > tau``."""
        return await search(body.texts, body.k, body.threshold, body.duplicates_only)

    @app.get("/search", response_model=SearchResponse, tags=["search"])
    async def search_get(q: str = Query(..., min_length=1, description="The query text."),
                         k: int = Query(5, ge=1, le=100, description="Matches."),
                         threshold: float | None = Query(None, ge=-1, le=1, description="Overrides tau.")
                         ) -> SearchResponse:
        """Nearest stored items of one text."""
        return await search([q], k, threshold, False)

    @app.post("/items", response_model=ItemsResponse, tags=["items"], dependencies=[Depends(writer)])
    async def upsert(body: ItemsRequest) -> ItemsResponse:
        """Add or replace items; answered once they are durable."""
        check_texts([item.text for item in body.items], settings.max_items, "item")
        items = [Item(i.id, i.text, i.payload) for i in body.items]
        return ItemsResponse(ids=await asyncio.to_thread(retriever.upsert, items))

    @app.get("/items/{item_id:path}", response_model=ItemOut, tags=["items"])
    async def get_item(item_id: str) -> ItemOut:
        """One stored item."""
        item = await asyncio.to_thread(retriever.get, item_id)
        if item is None:
            raise HTTPException(404, f"no item {item_id!r}")
        return ItemOut(id=item.id, text=item.text, payload=item.payload)

    @app.delete("/items/{item_id:path}", response_model=DeleteResponse, tags=["items"],
                dependencies=[Depends(writer)])
    async def delete_item(item_id: str) -> DeleteResponse:
        """Delete one item; answered once the delete is durable."""
        if not await asyncio.to_thread(retriever.delete, [item_id]):
            raise HTTPException(404, f"no item {item_id!r}")
        return DeleteResponse(deleted=item_id)

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
                        read_only=settings.read_only)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests, errors and latency by route; index size."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


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


async def _snapshot_loop(retriever: Retriever, every_s: float) -> None:
    """Write a FAISS snapshot now and then when writes happened (SQLite already has them)."""
    while True:
        await asyncio.sleep(every_s)
        if retriever.store.dirty:
            await asyncio.to_thread(retriever.save)
