"""The server's routes: each parses its request, calls the serving run (read once, so the
request ends on the run it started with) and answers; a bad request is a 4xx with one message
in {"error": ...}, counted by reason."""

from __future__ import annotations

import json
import time
from datetime import datetime

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter, \
    ValidationError

from recsys.schema import ITEM_ID
from recsys.serve.feedback import Event
from recsys.serve.metrics import all_workers
from recsys.serve.recommender import CANDIDATES
from recsys.serve.scorer import Request as ScoreRequest
from recsys.serve.scorer import RequestError
from recsys.serve.served_log import Shown, new_request_id

MAX_CANDIDATES = 1000  # items one request may score
MAX_EVENTS = 1000  # feedback events one request may carry
MAX_BODY_BYTES = 1 << 20  # a request body beyond this is refused (413) before it is parsed

router = APIRouter()


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt | StrictStr
    scenario: StrictInt | StrictStr
    item_ids: list[StrictInt] | list[StrictStr] = Field(min_length=1,
                                                        max_length=MAX_CANDIDATES)
    context: dict[str, StrictInt | float | StrictStr | None] = Field(default_factory=dict)
    # how many of the answer's first (best) items the client shows: only they are impressions
    # in the served log; the answer still scores every candidate. None: all are shown
    shown: StrictInt | None = Field(default=None, ge=1)


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt | StrictStr
    item_id: StrictInt | StrictStr
    scenario: StrictInt | StrictStr
    clicked: StrictBool
    timestamp: datetime | None = None  # ISO 8601 or seconds since the epoch; None: now
    request_id: StrictInt = 0  # the served request the item was in (orders ties at an instant)


FEEDBACK = TypeAdapter(list[FeedbackEvent])


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt | StrictStr
    scenario: StrictInt | StrictStr
    k: StrictInt = Field(default=20, ge=1, le=MAX_CANDIDATES)
    candidates: StrictInt = Field(default=CANDIDATES, ge=1, le=MAX_CANDIDATES)
    exclude: list[StrictInt] | list[StrictStr] = Field(default_factory=list,
                                                       max_length=MAX_CANDIDATES)
    context: dict[str, StrictInt | float | StrictStr | None] = Field(default_factory=dict)


def refuse(app: FastAPI, status: int, reason: str, message: str) -> JSONResponse:
    """A refusal: one message, counted by its reason, naming the serving run."""
    app.state.metrics.refused.labels(reason).inc()
    return JSONResponse({"error": message}, status_code=status,
                        headers=app.state.serving.served.headers)


def too_large(app: FastAPI) -> JSONResponse:  # declared by its length, or found reading it
    return refuse(app, 413, "body too large", f"request body over {MAX_BODY_BYTES:,} "
                  f"bytes; send at most {MAX_CANDIDATES:,} candidates")


async def body_json(request: Request):
    """The request's JSON, or the refusal to answer with."""
    body = b""
    async for chunk in request.stream():  # a body sent without a length is capped too
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None, too_large(request.app)
    try:
        return json.loads(body), None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, refuse(request.app, 400, "malformed json", f"malformed JSON: {e}")


async def parsed_body(request: Request, body: type[BaseModel]):
    """The request's body as `body`, or the refusal to answer with."""
    data, refused = await body_json(request)
    if refused is not None:
        return None, refused
    try:
        return body.model_validate(data), None
    except ValidationError as e:
        return None, refuse(request.app, 422, "invalid request", _first_error(e, body))


def _repeated(items: list):
    """The first item that appears twice, or None."""
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


@router.post("/score")
async def score(request: Request):
    served = request.app.state.serving.served  # read once
    parsed, refused = await parsed_body(request, ScoreBody)
    if refused is not None:
        return refused
    if (twice := _repeated(parsed.item_ids)) is not None:
        return refuse(request.app, 422, "duplicate items", f"item_ids: {twice!r} appears more "
                      f"than once; send each candidate once")
    try:
        result = await run_in_threadpool(served.scorer.score, ScoreRequest(
            parsed.user_id, parsed.scenario, parsed.item_ids, parsed.context))
    except RequestError as e:
        return refuse(request.app, 422, "invalid request", str(e))
    request.app.state.metrics.features.observe(result.feature_seconds)
    order = (-result.scores).argsort(kind="stable")
    logged = order[:parsed.shown]
    request_id = log_served(request.app, served, "score", result.seen.take(logged),
                            result.scores[logged])
    return JSONResponse({"scores": [{ITEM_ID: result.item_ids[i],
                                     "score": float(result.scores[i])} for i in order],
                         "request_id": request_id}, headers=served.headers)


def log_served(app: FastAPI, served, endpoint: str, seen, scores) -> int:
    """The answer's ID; its items (in the answer's order) on their way to the served log."""
    request_id = new_request_id()
    if app.state.serving.served_log is not None and seen is not None:
        info = served.scorer.info
        app.state.serving.served_log.record(Shown(request_id, time.time_ns() // 1000, endpoint,
                                                  info["run"], info["model_fingerprint"], seen,
                                                  scores))
    return request_id


@router.post("/feedback")
async def feedback(request: Request):
    """One event {user_id, item_id, scenario, clicked, timestamp?} or a list of them."""
    served = request.app.state.serving.served
    data, refused = await body_json(request)
    if refused is not None:
        return refused
    events = [data] if isinstance(data, dict) else data
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        return refuse(request.app, 422, "invalid request", f"the body: send one event or a list of "
                      f"1 to {MAX_EVENTS:,} events")
    try:
        parsed = FEEDBACK.validate_python(events)
    except ValidationError as e:
        return refuse(request.app, 422, "invalid request", _first_error(e, FeedbackEvent, "events"))
    try:
        clicks = await run_in_threadpool(served.history_writer.record,
                                         [Event(**e.model_dump()) for e in parsed])
    except RequestError as e:
        return refuse(request.app, 422, "invalid request", str(e))
    answer = {"events": len(parsed), "clicks": clicks}
    if clicks and not served.scorer.layout.history_length:
        answer["note"] = (f"the serving model ({served.scorer.info['name']}) reads no history: "
                          f"the clicks are kept in the users' histories and the feedback log "
                          f"and change no score until a model that reads the history serves")
    return JSONResponse(answer, headers=served.headers)


@router.post("/recommend")
async def recommend(request: Request):
    served = request.app.state.serving.served
    if served.recommender is None:
        return refuse(request.app, 404, "no retrieval", "this server has no retrieval run: "
                      "start it with `recsys serve --retrieval RUN` (a two_tower run with "
                      "`recsys index`)")
    parsed, refused = await parsed_body(request, RecommendBody)
    if refused is not None:
        return refused
    if parsed.k > parsed.candidates:
        return refuse(request.app, 422, "invalid request", f"k: {parsed.k} is more than the "
                      f"{parsed.candidates} candidates retrieved; ask for at most that many")
    try:
        found = await run_in_threadpool(served.recommender.recommend, parsed.user_id,
                                        parsed.scenario, parsed.k, parsed.exclude,
                                        parsed.candidates, parsed.context)
    except RequestError as e:
        return refuse(request.app, 422, "invalid request", str(e))
    for stage, seconds in found.seconds.items():
        request.app.state.metrics.stages.labels(stage).observe(seconds)
    request_id = log_served(request.app, served, "recommend", found.seen, found.rank_scores)
    return JSONResponse({"request_id": request_id, "items": [
        {ITEM_ID: item, "score": float(score),
         "retrieval_score": None if found.retrieval_scores is None else
         float(found.retrieval_scores[i])}
        for i, (item, score) in enumerate(zip(found.item_ids, found.rank_scores))],
        "source": found.source}, headers=served.headers)


@router.get("/health")
def health(request: Request):
    served = request.app.state.serving.served
    return JSONResponse({"status": "ok", "reloads": served.scorer.features.reloads},
                        headers=served.headers)


@router.get("/metadata")
def metadata(request: Request):
    serving = request.app.state.serving
    served = serving.served
    fresh = serving.freshness()
    return JSONResponse({**served.scorer.info,
                         "limits": {"max_candidates": MAX_CANDIDATES,
                                    "max_body_bytes": MAX_BODY_BYTES},
                         "retrieval": served.recommender.info if served.recommender else None,
                         "watch": serving.settings.watch or None,
                         "freshness": fresh, "warnings": serving.warnings(fresh),
                         "versions": _versions()},
                        headers=served.headers)


@router.get("/metrics")
def prometheus(request: Request):
    request.app.state.serving.freshness()  # the log's and the views' times, as of now
    return PlainTextResponse(generate_latest(all_workers() or request.app.state.metrics.registry),
                             media_type=CONTENT_TYPE_LATEST)


def _first_error(error: ValidationError, body: type[BaseModel], items: str = "") -> str:
    """The first problem of a request body, as a person reads it: item_ids: ... (`items`:
    what a list of bodies is called: events[2].clicked: ...)"""
    errors = error.errors()  # an unknown key says more than the missing one it replaced
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = list(e["loc"])
    head = f"{items}[{loc.pop(0)}]" if items and loc and isinstance(loc[0], int) else ""
    keys = [str(p) for p in loc if not str(p).startswith(
        ("list[", "int", "str", "float", "none", "bool", "datetime"))]
    where = ".".join([head, *keys] if head else keys)
    what = {"missing": "missing (it is required)",
            "extra_forbidden": f"not a known key (the keys: {', '.join(body.model_fields)})"
            }.get(e["type"], e["msg"])
    if e["type"] in ("too_short", "too_long") and "item_ids" in where:
        what = f"send 1 to {MAX_CANDIDATES:,} candidates"
    return f"{where or 'the body'}: {what}"


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("recsys", "torch", "torchrec", "feast", "fastapi")}
