"""Typed request and response bodies of the HTTP service.

Requests are strict: ``k`` must be a JSON integer (``5`` or ``5.0``, not ``"5"``, not ``true``), ``threshold`` a
finite number, and ids, texts and payloads meet the rules of ``retrieval.validate`` (one set of
rules for the CLI and HTTP), so a bad value is a 422 naming its field, never a 500 later."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

from ..review.feedback import Verdict
from ..validate import ID_PATTERN, MAX_ID_CHARS, TEXT_PATTERN, id_problem, payload_problem, text_problem

#: A text: at least one character that is not whitespace (the pattern documents what the validator checks).
Text = Annotated[StrictStr, Field(min_length=1, json_schema_extra={"pattern": TEXT_PATTERN})]


def _checked(problem: str | None, value: Any, what: str) -> Any:
    if problem:
        raise ValueError(f"{what} {problem}")
    return value


def _strict_k(value: Any) -> Any:
    if isinstance(value, bool | str):  # JSON Schema's integer: 5 and 5.0, never "5" or true
        raise ValueError(f"k must be a JSON integer, not {type(value).__name__}")
    return value


def _valid_id(value: str) -> str:
    return _checked(id_problem(value), value, "id")


def _valid_payload(value: Any) -> Any:
    return _checked(payload_problem(value), value, "payload")


def _refusing(key: str, message: str) -> Any:
    """A validator refusing a body that has ``key`` (the other kind of query), with ``message``."""
    def refuse(cls: type, data: Any) -> Any:
        if isinstance(data, dict) and key in data:
            raise ValueError(message)
        return data
    return model_validator(mode="before")(classmethod(refuse))


class _SearchOptions(BaseModel):
    """What every search request may say besides its queries."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(5, ge=1, le=100, description="Matches per query.")
    threshold: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False, strict=True,
                                    description="Duplicate when score > threshold.")
    duplicates_only: StrictBool = Field(False, description="Return only matches above the threshold.")

    _k = field_validator("k", mode="before")(_strict_k)


class SearchRequest(_SearchOptions):
    """Texts to look up; ``threshold`` overrides tau for the verdicts of this request."""

    texts: list[Text] = Field(..., min_length=1, description="Query texts, each non-empty.")

    _not_images = _refusing("images", 'this index holds texts, not images: send {"texts": [...]}')

    @field_validator("texts")
    @classmethod
    def _texts(cls, texts: list[str]) -> list[str]:
        for n, text in enumerate(texts):
            _checked(text_problem(text), text, f"text {n}")
        return texts


#: An image in a JSON body: its file's bytes (PNG, JPEG, ...) in base64, optionally as a data URL.
Base64Image = Annotated[StrictStr, Field(min_length=1, description="An image file's bytes in base64 "
                                                                   "(a data: URL is accepted too).")]


class ImageSearchRequest(_SearchOptions):
    """Images to look up (an index of images); ``threshold`` overrides tau for this request."""

    images: list[Base64Image] = Field(..., min_length=1, description="Query images, base64.")

    _not_texts = _refusing("texts", 'this index holds images: send {"images": [base64, ...]} or a multipart '
                                    "upload of files, not texts")


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
    """An item to add or replace. The id: 1-512 characters, not blank, no control characters."""

    model_config = ConfigDict(extra="forbid")
    id: StrictStr = Field(..., min_length=1, max_length=MAX_ID_CHARS, json_schema_extra={"pattern": ID_PATTERN},
                          description="1-512 characters, not blank, no control characters.")
    text: Text
    payload: dict[str, Any] = Field(default_factory=dict, description="Any JSON object, at most 32 levels deep.")

    _id = field_validator("id")(_valid_id)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _checked(text_problem(value), value, "text")

    _payload = field_validator("payload", mode="before")(_valid_payload)


class ImageItemIn(BaseModel):
    """An image to add or replace: its id, the image in base64, an optional text shown with it
    (default: the id), and a payload."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(..., min_length=1, max_length=MAX_ID_CHARS, json_schema_extra={"pattern": ID_PATTERN},
                          description="1-512 characters, not blank, no control characters.")
    image: Base64Image
    text: Text | None = Field(None, description="Shown with matches (default: the id).")
    payload: dict[str, Any] = Field(default_factory=dict, description="Any JSON object, at most 32 levels deep.")

    _id = field_validator("id")(_valid_id)
    _payload = field_validator("payload", mode="before")(_valid_payload)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return value if value is None else _checked(text_problem(value), value, "text")


class ItemsRequest(BaseModel):
    """Items to upsert in one atomic batch (a repeated id: the last one wins)."""

    model_config = ConfigDict(extra="forbid")
    items: list[ItemIn] = Field(..., min_length=1)
    on_duplicate: Literal["add", "skip", "report"] = Field(
        "add", description="add: store every item; skip: store only items with no match above tau (stored, or "
                           "earlier in this request); report: store nothing, say what skip would do.")


class ImageItemsRequest(ItemsRequest):
    """Images to upsert in one atomic batch (a repeated id: the last one wins)."""

    items: list[ImageItemIn] = Field(..., min_length=1)


class OutcomeOut(BaseModel):
    """What became of one item: stored or not, and the item it duplicates (cosine > tau)."""

    id: str
    stored: bool
    duplicate_of: str | None = None
    score: float | None = None


class ItemsResponse(BaseModel):
    """The ids written (durable when this answer is sent) and each item's outcome, in request order."""

    ids: list[str]
    items: list[OutcomeOut]


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


class SnapshotOut(BaseModel):
    """The FAISS snapshots of a writing server: every write is durable in SQLite at once; a
    snapshot makes the next start fast. A failed one is logged and retried."""

    last_saved_at: str | None = Field(None, description="When the last snapshot was written (UTC, ISO 8601).")
    last_error: str | None = Field(None, description="Why the last try failed, if it did.")
    last_error_at: str | None = None
    failures: int = Field(0, description="Failed tries since the last success.")
    pending: bool = Field(False, description="Writes that no snapshot holds yet.")


class StatsOut(BaseModel):
    """What the service serves."""

    count: int
    kind: str
    built_kind: str
    dimension: int
    model: dict[str, Any]
    tau: float
    read_only: bool
    snapshot: SnapshotOut
    #: the built kind's search parameters: the tuned nprobe / ef_search and the recall@10 measured
    #: for it on the index's own vectors (empty for exact search)
    search: dict[str, Any] = {}
    #: a sharded index's shards: each one's folder, count and built kind (empty for one index)
    shards: list[dict[str, Any]] = []
    #: what the index holds: ``text`` or ``image``
    modality: str = "text"
    #: writes (items, verdicts, tau) need ``Authorization: Bearer KEY``
    writes_need_key: bool = False


class ValidationIssue(BaseModel):
    """One field that failed validation."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every 4xx answer: what went wrong (a sentence, or the fields that failed validation)."""

    detail: str | list[ValidationIssue]


# -- review: verdicts, tau, groups -------------------------------------------------------------
#: The objectives ``calibrate.best_threshold`` knows, as a pattern.
OBJECTIVE_PATTERN = r"^(accuracy|f1|precision@(0?\.[0-9]*[1-9][0-9]*|1(\.0*)?))$"

class FeedbackRequest(BaseModel):
    """A person's verdict on a pair: a query (its text, a stored item's id, or for an index of
    images a base64 image) and the stored item ``id`` it was shown with. The server scores the
    pair with the index's encoder; the client sends no score."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["query"]}, {"required": ["query_id"]}, {"required": ["query_image"]}]})
    id: StrictStr = Field(..., min_length=1, max_length=MAX_ID_CHARS, json_schema_extra={"pattern": ID_PATTERN},
                          description="The stored item judged.")
    duplicate: StrictBool = Field(..., description="The person's verdict: a duplicate of the query, or not.")
    # Each query field is absent or set (null is refused): exactly one of the three is given.
    query: Text = Field(None, description="The query text it was found for.")
    query_id: StrictStr = Field(None, min_length=1, max_length=MAX_ID_CHARS, json_schema_extra={"pattern": ID_PATTERN},
                                description="Or: the stored item it is compared with.")
    query_image: Base64Image = Field(None, description="Or (an index of images): the query image, base64.")
    query_name: StrictStr = Field(None, max_length=200, description="The query image's file name.")

    _ids = field_validator("id", "query_id")(lambda v: v if v is None else _valid_id(v))
    _query = field_validator("query")(lambda v: v if v is None else _checked(text_problem(v), v, "query"))

    @model_validator(mode="after")
    def _one_query(self) -> FeedbackRequest:
        given = [n for n in ("query", "query_id", "query_image") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of query, query_id and query_image"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


#: A stored verdict (the pair, its cosine by the index's encoder, that encoder's fingerprint, the
#: verdict and when, UTC), as ``review.Verdict`` holds it.
VerdictOut = Verdict


class FeedbackList(BaseModel):
    """Verdicts, newest first, and how many of each kind are stored in all."""

    verdicts: list[VerdictOut]
    counts: dict[str, int]


class CalibrateRequest(BaseModel):
    """Re-choose tau from the stored verdicts (nothing is written: ``PUT /tau`` applies it)."""

    model_config = ConfigDict(extra="forbid")
    objective: StrictStr = Field("accuracy", pattern=OBJECTIVE_PATTERN,
                                 description="accuracy, f1, or precision@R with 0 < R <= 1 (e.g. precision@0.9).")
    min_verdicts: int = Field(10, ge=1, le=1_000_000, description="Fewest verdicts of each kind needed.")
    plot: StrictBool = Field(True, description="Include the score histograms and PR curve as a PNG (base64).")

    _k = field_validator("min_verdicts", mode="before")(_strict_k)


class TauChoiceOut(BaseModel):
    """The tau the verdicts call for, and the metrics at the index's tau now and at it."""

    objective: str
    objective_value: float
    tau_before: float
    tau: float
    before: dict[str, Any]
    after: dict[str, Any]
    verdicts: dict[str, int]
    plot_png: str | None = Field(None, description="The plot, base64 PNG.")


class TauRequest(BaseModel):
    """A tau to write to the index's manifest."""

    model_config = ConfigDict(extra="forbid")
    tau: float = Field(..., ge=-1, le=1, allow_inf_nan=False, strict=True, description="Duplicate when cosine > tau.")


class TauOut(BaseModel):
    """The index's tau, now."""

    tau: float
    tau_before: float


class MemberOut(BaseModel):
    """A member of a group: its cosine to the representative, whether it is the one to keep,
    and what the index holds under its id (``stored`` false: the index lacks it)."""

    id: str
    score: float
    keep: bool
    representative: bool
    stored: bool
    text: str | None
    payload: dict[str, Any]


class GroupOut(BaseModel):
    """A group of near-duplicates, its representative first."""

    number: int
    representative: str
    members: list[MemberOut]


class GroupsOut(BaseModel):
    """A page of the loaded or computed groups (``source`` null: none yet)."""

    source: str | None
    total: int
    offset: int
    groups: list[GroupOut]


class ComputeGroupsRequest(BaseModel):
    """Compute the groups among the index's own items (its vectors, nothing encoded)."""

    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(None, gt=-1, lt=1, allow_inf_nan=False, strict=True,
                                    description="Duplicates when cosine > this (default: the index's tau).")
    linkage: Literal["star", "connected"] = "star"
