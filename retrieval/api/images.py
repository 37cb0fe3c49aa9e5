"""The routes of a server whose index holds images: the same paths as for texts, with images in
base64 in JSON bodies or as files of a multipart upload.

``POST /search`` and ``POST /items`` take JSON (``{"images": [...]}``, ``{"items": [{"id", "image",
...}]}``); a ``multipart/form-data`` POST to either path is routed to ``/search/upload`` or
``/items/upload``, which take files. An image that is not one (or is damaged) is a 422 naming it,
one over the size bounds (``images.MAX_IMAGE_BYTES``, ``MAX_PIXELS``) a 413; nothing of the
request is stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from ..images import MAX_IMAGE_BYTES
from ..retriever import Item, Retriever
from ..validate import id_problem
from .models import ImageItemsRequest, ImageSearchRequest, ItemsResponse, OutcomeOut, QueryOut, SearchResponse

UPLOAD_PATHS = {"/search": "/search/upload", "/items": "/items/upload"}


class MultipartToUpload:
    """Sends a multipart POST to ``/search`` or ``/items`` to its upload route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS:
            content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
            if content_type.lower().startswith(b"multipart/form-data"):
                scope = {**scope, "path": UPLOAD_PATHS[scope["path"]], "raw_path": UPLOAD_PATHS[scope["path"]].encode()}
        await self.app(scope, receive, send)


def decoded(value: str, what: str) -> bytes:
    """The bytes of a base64 image (a ``data:...;base64,`` prefix is dropped); 422 when it is not base64."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    if len(value) * 3 // 4 > MAX_IMAGE_BYTES:
        raise HTTPException(413, f"{what}: larger than {MAX_IMAGE_BYTES:,} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{what}: not base64") from None


async def _files(files: list[UploadFile], limit: int) -> tuple[list[bytes], list[str]]:
    if len(files) > limit:
        raise HTTPException(413, f"{len(files)} files in one request; the limit is {limit}")
    names = [f.filename or f"file {n}" for n, f in enumerate(files, 1)]
    return [await f.read() for f in files], names


def add_image_routes(app: FastAPI, retriever: Retriever, settings, writer: Callable, errors: Callable) -> None:  # noqa: ANN001
    """Register the image routes (``settings``: the service's ``Settings``)."""

    def check_count(n: int, limit: int, what: str) -> None:
        if n > limit:
            raise HTTPException(413, f"{n} {what} in one request; the limit is {limit}")

    async def search(images: list[bytes], names: list[str], k: int, threshold: float | None,
                     duplicates_only: bool) -> SearchResponse:
        results = await asyncio.to_thread(retriever.search_images, images, names, k, threshold, duplicates_only)
        return SearchResponse(results=[QueryOut(**r.to_dict()) for r in results])

    @app.post("/search", response_model=SearchResponse, tags=["search"], responses=errors(400, 413, 422))
    async def search_post(body: ImageSearchRequest) -> SearchResponse:
        """Nearest stored images of each image (base64); ``duplicate`` is ``score > tau``. A multipart
        upload of files to this path is answered by ``/search/upload``."""
        check_count(len(body.images), settings.max_texts, "images")
        names = [f"image {n}" for n in range(len(body.images))]
        images = [decoded(value, name) for value, name in zip(body.images, names)]
        return await search(images, names, body.k, body.threshold, body.duplicates_only)

    @app.post("/search/upload", response_model=SearchResponse, tags=["search"], responses=errors(400, 413, 422))
    async def search_upload(files: Annotated[list[UploadFile], File(description="Query images.")],
                            k: Annotated[int, Form(ge=1, le=100)] = 5,
                            threshold: Annotated[float | None, Form(ge=-1, le=1)] = None,
                            duplicates_only: Annotated[bool, Form()] = False) -> SearchResponse:
        """Nearest stored images of each uploaded file (multipart/form-data, field ``files``)."""
        images, names = await _files(files, settings.max_texts)
        return await search(images, names, k, threshold, duplicates_only)

    @app.get("/search", response_model=SearchResponse, tags=["search"], responses=errors(422))
    async def search_get() -> SearchResponse:
        """An index of images is searched with images: POST /search."""
        raise HTTPException(422, "this index holds images: POST /search with {\"images\": [base64, ...]} or a "
                                 "multipart upload of files")

    async def upsert(items: list[Item], on_duplicate: str) -> ItemsResponse:
        outcomes = await asyncio.to_thread(retriever.insert, items, on_duplicate)
        return ItemsResponse(ids=list(dict.fromkeys(o.id for o in outcomes if o.stored)),
                             items=[OutcomeOut(**o.to_dict()) for o in outcomes])

    @app.post("/items", response_model=ItemsResponse, tags=["items"], dependencies=[Depends(writer)],
              responses=errors(400, 401, 403, 413, 422, 507))
    async def upsert_post(body: ImageItemsRequest) -> ItemsResponse:
        """Add or replace images (base64), or (on_duplicate) only those that duplicate nothing stored;
        answered once they are durable. A multipart upload to this path goes to ``/items/upload``."""
        check_count(len(body.items), settings.max_items, "items")
        items = [Item(i.id, i.text or i.id, i.payload, image=decoded(i.image, f"item {n} ({i.id!r})"))
                 for n, i in enumerate(body.items)]
        return await upsert(items, body.on_duplicate)

    @app.post("/items/upload", response_model=ItemsResponse, tags=["items"], dependencies=[Depends(writer)],
              responses=errors(400, 401, 403, 413, 422, 507))
    async def upsert_upload(files: Annotated[list[UploadFile], File(description="Images; each one's id is its "
                                                                                "file name unless ids are given.")],
                            ids: Annotated[list[str] | None, Form(description="An id a file, in order.")] = None,
                            on_duplicate: Annotated[Literal["add", "skip", "report"], Form()] = "add"
                            ) -> ItemsResponse:
        """Add or replace uploaded images (multipart/form-data: ``files``, optional ``ids``)."""
        images, names = await _files(files, settings.max_items)
        ids = ids or names
        if len(ids) != len(images):
            raise HTTPException(422, f"{len(ids)} ids for {len(images)} files")
        for n, item_id in enumerate(ids):
            problem = id_problem(item_id)
            if problem:
                raise HTTPException(422, f"id {n} {problem}")
        return await upsert([Item(i, name, {}, image=data) for i, name, data in zip(ids, names, images)],
                            on_duplicate)
