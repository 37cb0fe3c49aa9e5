"""Typed request and response bodies of the HTTP service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SearchRequest(BaseModel):
    """Texts to look up; ``threshold`` overrides tau for the verdicts of this request."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(..., min_length=1, description="Query texts, each non-empty.")
    k: int = Field(5, ge=1, le=100, description="Matches per query.")
    threshold: float | None = Field(None, ge=-1, le=1, description="Duplicate when score > threshold.")
    duplicates_only: bool = Field(False, description="Return only matches above the threshold.")


class MatchOut(BaseModel):
    """A stored item found for a query (the shape of `twin query --json`)."""

    id: str
    score: float
    duplicate: bool
    text: str | None
    payload: dict[str, Any]


class QueryOut(BaseModel):
    """One query and its matches, best first."""

    query: str
    matches: list[MatchOut]


class SearchResponse(BaseModel):
    """One result a query, in request order."""

    results: list[QueryOut]


class ItemIn(BaseModel):
    """An item to add or replace."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=512)
    text: str = Field(..., min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)


class ItemsRequest(BaseModel):
    """Items to upsert in one atomic batch (a repeated id: the last one wins)."""

    model_config = ConfigDict(extra="forbid")
    items: list[ItemIn] = Field(..., min_length=1)


class ItemsResponse(BaseModel):
    """The ids written, durable when this answer is sent."""

    ids: list[str]


class ItemOut(BaseModel):
    """A stored item."""

    id: str
    text: str | None
    payload: dict[str, Any]


class DeleteResponse(BaseModel):
    """The id deleted."""

    deleted: str


class StatusOut(BaseModel):
    """Liveness or readiness."""

    status: str


class StatsOut(BaseModel):
    """What the service serves."""

    count: int
    kind: str
    built_kind: str
    dimension: int
    model: dict[str, Any]
    tau: float
    read_only: bool
