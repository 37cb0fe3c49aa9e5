"""The review page at ``/``: plain HTML, one script and one style sheet, all served by twin
itself from ``retrieval/api/page/`` (nothing from another host: it works offline). The page is
a client of the JSON routes (``/search``, ``/feedback``, ``/tau``, ``/groups``, ``/stats``) and
writes every text into the page as text, never as HTML."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/page-assets"
FOLDER = Path(__file__).parent / "page"
#: Scripts, styles and connections from this server only; images from it or data: URLs (the plot).
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
          "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def mount_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its script and styles under ``/page-assets``."""
    app.mount(ASSETS, StaticFiles(directory=FOLDER), name="page-assets")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(FOLDER / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": POLICY})
