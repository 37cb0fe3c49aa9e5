"""The review routes: verdicts on pairs (``/feedback``), tau learned from them (``/tau``), and
duplicate groups to look at (``/groups``). The page at ``/`` (``page.py``) is their one client
in the box; each goes through ``review.Reviewer``, as ``twin feedback`` and ``twin calibrate`` do.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

from fastapi import Depends, FastAPI, HTTPException, Query

from ..review import GroupBook, Reviewer
from .images import decoded
from .models import (
    CalibrateRequest,
    ComputeGroupsRequest,
    FeedbackList,
    FeedbackRequest,
    GroupOut,
    GroupsOut,
    MemberOut,
    TauChoiceOut,
    TauOut,
    TauRequest,
    VerdictOut,
)

#: Above this many items, groups are computed with `twin groups --index` and loaded with `twin serve --groups`.
MAX_COMPUTE_ITEMS = 200_000


class ReviewState:
    """The review's shared state: the reviewer, and the groups loaded or computed (if any)."""

    def __init__(self, reviewer: Reviewer, book: GroupBook | None = None) -> None:
        self.reviewer, self.book = reviewer, book
        self.computing = asyncio.Lock()


def add_review_routes(app: FastAPI, state: ReviewState, writer: Callable, errors: Callable) -> None:
    """Register ``/feedback``, ``/tau`` and ``/groups`` (``writer``: the dependency guarding writes)."""
    reviewer = state.reviewer

    @app.post("/feedback", response_model=VerdictOut, tags=["review"], dependencies=[Depends(writer)],
              responses=errors(400, 401, 403, 404, 413, 422, 507))
    async def feedback(body: FeedbackRequest) -> VerdictOut:
        """Store a person's verdict on a pair, scored by the index's encoder; a second verdict on
        the same pair replaces the first. Answered once it is durable."""
        image = decoded(body.query_image, "query_image") if body.query_image is not None else None
        verdict = await asyncio.to_thread(reviewer.judge, body.id, body.duplicate, body.query, body.query_id, image,
                                          body.query_name or "uploaded image")
        return verdict

    @app.get("/feedback", response_model=FeedbackList, tags=["review"], responses=errors(422))
    async def verdicts(query: str | None = Query(None, description="Only verdicts on this query text's pairs."),
                       id: str | None = Query(None, description="Only verdicts on pairs holding this item."),
                       limit: int = Query(100, ge=1, le=10_000, description="At most this many, newest first.")
                       ) -> FeedbackList:
        """Stored verdicts, newest first, and the counts of each kind."""
        found = await asyncio.to_thread(reviewer.feedback.find, query, id, limit)
        counts = await asyncio.to_thread(reviewer.feedback.counts)
        return FeedbackList(verdicts=found, counts=counts)

    @app.post("/tau/calibrate", response_model=TauChoiceOut, tags=["review"], responses=errors(400, 409, 422))
    async def calibrate(body: CalibrateRequest) -> TauChoiceOut:
        """The tau that maximises the objective on the stored verdicts, with accuracy, precision
        and recall at the index's tau now and at the new one. Writes nothing (PUT /tau does).
        409 while there are too few verdicts of either kind."""
        choice = await asyncio.to_thread(reviewer.choose_tau, body.objective, body.min_verdicts)
        png = await asyncio.to_thread(choice.plot_png) if body.plot else None
        return TauChoiceOut(**choice.to_dict(), plot_png=base64.b64encode(png).decode() if png else None)

    @app.put("/tau", response_model=TauOut, tags=["review"], dependencies=[Depends(writer)],
             responses=errors(400, 401, 403, 422, 507))
    async def set_tau(body: TauRequest) -> TauOut:
        """Set the index's tau (written to its manifest; read-only servers of the folder follow)."""
        before = reviewer.retriever.tau
        await asyncio.to_thread(reviewer.set_tau, body.tau)
        return TauOut(tau=reviewer.retriever.tau, tau_before=before)

    @app.get("/groups", response_model=GroupsOut, tags=["review"], responses=errors(422))
    async def groups(offset: int = Query(0, ge=0, description="Groups to skip."),
                     limit: int = Query(20, ge=1, le=500, description="Groups to return.")) -> GroupsOut:
        """A page of the duplicate groups loaded (``twin serve --groups``) or computed."""
        book = state.book
        if book is None:
            return GroupsOut(source=None, total=0, offset=offset, groups=[])
        return await asyncio.to_thread(_page, reviewer, book, offset, limit)

    @app.post("/groups/compute", response_model=GroupsOut, tags=["review"], responses=errors(400, 409, 413, 422))
    async def compute(body: ComputeGroupsRequest) -> GroupsOut:
        """Compute the duplicate groups among the index's items (its own vectors) and show the first page."""
        if len(reviewer.retriever) > MAX_COMPUTE_ITEMS:
            raise HTTPException(413, f"the index holds {len(reviewer.retriever):,} items; above "
                                     f"{MAX_COMPUTE_ITEMS:,}, run `twin groups --index` and serve its output "
                                     "with `twin serve --groups FILE`")
        if state.computing.locked():
            raise HTTPException(409, "groups are being computed already")
        async with state.computing:
            state.book = await asyncio.to_thread(reviewer.compute_groups, body.threshold, body.linkage)
        return await asyncio.to_thread(_page, reviewer, state.book, 0, 20)


def _page(reviewer: Reviewer, book: GroupBook, offset: int, limit: int) -> GroupsOut:
    """Groups ``offset`` to ``offset + limit`` with their members' texts and payloads from the index."""
    shown = book.groups[offset: offset + limit]
    stored = reviewer.retriever.store.records_of([m.id for g in shown for m in g.members])
    out = []
    for group in shown:
        members = []
        for m in group.members:
            record = stored.get(m.id)
            members.append(MemberOut(id=m.id, score=m.score, keep=m.keep, representative=m.id == group.representative,
                                     stored=record is not None, text=record.text if record else None,
                                     payload=record.payload if record else {}))
        out.append(GroupOut(number=group.number, representative=group.representative, members=members))
    return GroupsOut(source=book.source, total=len(book), offset=offset, groups=out)
