"""How twin runs under uvicorn: one configuration for `twin serve` and the tests, and an HTTP/1.1
protocol that answers requests it cannot parse (a non-numeric Content-Length, a malformed request
line) with a JSON ``detail`` like every other 4xx."""

from __future__ import annotations

import json

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol


def server_config(app: FastAPI, **options: object) -> uvicorn.Config:
    """uvicorn's configuration for the twin app (``options``: host, port, ... as uvicorn takes them)."""
    return uvicorn.Config(app, log_level="warning", http=JSONErrorsH11Protocol, **options)


class JSONErrorsH11Protocol(H11Protocol):
    """H11Protocol whose 400 answer to an unparsable request is ``{"detail": ...}``."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"detail": f"malformed HTTP request: {msg}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
