"""`recsys serve`: a trained run behind HTTP (FastAPI on uvicorn).

- POST /score {"user_id", "scenario", "item_ids": [...], "context": {...}} ->
  {"scores": [{"item_id", "score"}, ...]} best first; the model's and the dataset's
  fingerprints in the X-Recsys-Model and X-Recsys-Dataset headers.
- POST /feedback {"user_id", "item_id", "scenario", "clicked", "timestamp"?} or a list of
  them -> {"events", "clicks"}: a click joins the user's history in the online store at once.
- POST /recommend {"user_id", "scenario", "k"?, "candidates"?, "exclude"?, "context"?} (with
  `--retrieval RUN`) -> {"items": [{"item_id", "score", "retrieval_score"}, ...], "source"}:
  the retrieval run's nearest items of the scenario, ranked by the served run (recommender).
- GET /health, GET /metadata (model, config, dataset, feature service, versions), GET /metrics
  (Prometheus text: requests by endpoint and status, latency histograms, refusals by reason,
  the serving run and, with `--watch DIR`, the swaps by result).

With `--watch DIR` the server follows DIR's newest finished run (serve.watch): a new run is
loaded and checked in the background and swapped in whole (`Served`); every request reads the
serving run once, so it finishes on the model it started with.

A bad request is a 4xx with one clear message in {"error": ...} (malformed JSON 400, a body over
MAX_BODY_BYTES 413, anything the request schema or the model refuses 422), counted, and the
server goes on serving.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, \
    Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter, \
    ValidationError

from recsys.schema import ITEM_ID
from recsys.serve.feedback import Event, HistoryWriter
from recsys.serve.recommender import CANDIDATES, Recommender
from recsys.serve.scorer import Request as ScoreRequest
from recsys.serve.scorer import RequestError, Scorer
from recsys.serve.settings import Settings
from recsys.serve.watch import RunWatcher

MAX_CANDIDATES = 1000  # items one request may score
MAX_EVENTS = 1000  # feedback events one request may carry
MAX_BODY_BYTES = 1 << 20  # a request body beyond this is refused (413) before it is parsed
SETTINGS_ENV = "RECSYS_SERVE"  # the settings of each worker process (JSON)
# the folder where the workers of `--workers N` count (prometheus_client's multiprocess mode;
# its own PROMETHEUS_MULTIPROC_DIR cannot tell, as Feast sets it on import in every process)
METRICS_DIR_ENV = "RECSYS_SERVE_METRICS_DIR"
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt | StrictStr
    scenario: StrictInt | StrictStr
    item_ids: list[StrictInt] | list[StrictStr] = Field(min_length=1,
                                                        max_length=MAX_CANDIDATES)
    context: dict[str, StrictInt | float | StrictStr | None] = Field(default_factory=dict)


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


class _Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_requests", "Requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("recsys_request_seconds", "Request latency",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.features = Histogram("recsys_feature_seconds", "Reading and assembling the "
                                  "features of a /score request", buckets=LATENCY_BUCKETS,
                                  registry=self.registry)
        self.refused = Counter("recsys_refused", "Refused requests by reason", ["reason"],
                               registry=self.registry)
        self.stages = Histogram("recsys_recommend_stage_seconds", "Each stage of a /recommend "
                                "request", ["stage"], buckets=LATENCY_BUCKETS,
                                registry=self.registry)
        self.serving = Gauge("recsys_serving_run", "1 for the run serving, 0 for those it "
                             "replaced", ["run", "model_fingerprint"], registry=self.registry,
                             multiprocess_mode="livemax")
        self.swaps = Counter("recsys_swaps", "Runs a watching server tried, by result (swapped "
                             "| refused)", ["result"], registry=self.registry)


@dataclass(frozen=True)
class Served:
    """What answers requests: a run's scorer, the history writer and the recommender that use
    it, and the headers naming it. `--watch` replaces it whole, in one assignment."""

    scorer: Scorer
    history: HistoryWriter
    recommender: Recommender | None
    headers: dict

    @classmethod
    def of(cls, scorer: Scorer, recommender: Recommender | None) -> "Served":
        info = scorer.info
        return cls(scorer, HistoryWriter(scorer, scorer.schema),
                   recommender.ranked_by(scorer) if recommender else None,
                   {"X-Recsys-Model": f"{info['name']} {info['model_fingerprint']}",
                    "X-Recsys-Run": info["run"],
                    "X-Recsys-Dataset": str(info["dataset_fingerprint"])})

    def labels(self) -> tuple[str, str]:
        return self.scorer.info["run"], self.scorer.info["model_fingerprint"]


def check_swappable(serving: Scorer, new: Scorer) -> None:
    """A run may replace the serving one if it reads the same repo's features the same way and
    scores a request: refused (ValueError) otherwise, before any request reaches it."""
    for what in ("schema", "feature_service", "scenarios"):
        if serving.info[what] != new.info[what]:
            raise ValueError(f"its {what} {new.info[what]!r} is not the serving run's "
                             f"{serving.info[what]!r}")
    first = np.zeros(1, dtype=np.int64)  # the first user and item of the store
    scores = new.score(ScoreRequest(new.features.users.raw_ids(first)[0], 0,
                                    new.features.items.raw_ids(first))).scores
    if not np.isfinite(scores).all():
        raise ValueError(f"it scored a request {scores.tolist()}: not a probability")


def create_app(settings: Settings, scorer: Scorer | None = None) -> FastAPI:
    torch.set_num_threads(1)  # one request, one core: concurrency comes from the requests
    scorer = scorer or Scorer(Path(settings.run), Path(settings.repo), settings.refresh_seconds)
    recommender = Recommender(scorer, Path(settings.retrieval), Path(settings.repo),
                              settings.refresh_seconds) if settings.retrieval else None
    metrics = _Metrics()
    app = FastAPI(title="recsys", docs_url=None, redoc_url=None)
    app.state.served = Served.of(scorer, recommender)
    metrics.serving.labels(*app.state.served.labels()).set(1)

    def refuse(status: int, reason: str, message: str) -> JSONResponse:
        metrics.refused.labels(reason).inc()
        return JSONResponse({"error": message}, status_code=status,
                            headers=app.state.served.headers)

    def too_large() -> JSONResponse:  # declared by its length, or found while reading it
        return refuse(413, "body too large", f"request body over {MAX_BODY_BYTES:,} bytes; "
                      f"send at most {MAX_CANDIDATES:,} candidates")

    app.add_middleware(_Measured, metrics=metrics, too_large=too_large)

    async def body_json(request: Request):
        """The request's JSON, or the refusal to answer with."""
        body = b""
        async for chunk in request.stream():  # a body sent without a length is capped too
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return None, too_large()
        try:
            return json.loads(body), None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return None, refuse(400, "malformed json", f"malformed JSON: {e}")

    async def parsed_body(request: Request, body: type[BaseModel]):
        """The request's body as `body`, or the refusal to answer with."""
        data, refused = await body_json(request)
        if refused is not None:
            return None, refused
        try:
            return body.model_validate(data), None
        except ValidationError as e:
            return None, refuse(422, "invalid request", _first_error(e, body))

    @app.post("/score")
    async def score(request: Request):
        served = app.state.served  # read once: the request ends on the run it started with
        parsed, refused = await parsed_body(request, ScoreBody)
        if refused is not None:
            return refused
        if len(set(parsed.item_ids)) < len(parsed.item_ids):
            seen, twice = set(), None
            for item in parsed.item_ids:
                if item in seen:
                    twice = item
                    break
                seen.add(item)
            return refuse(422, "duplicate items", f"item_ids: {twice!r} appears more than "
                          f"once; send each candidate once")
        try:
            result = await run_in_threadpool(served.scorer.score, ScoreRequest(
                parsed.user_id, parsed.scenario, parsed.item_ids, parsed.context))
        except RequestError as e:
            return refuse(422, "invalid request", str(e))
        metrics.features.observe(result.feature_seconds)
        order = (-result.scores).argsort(kind="stable")
        return JSONResponse({"scores": [{ITEM_ID: result.item_ids[i],
                                         "score": float(result.scores[i])} for i in order]},
                            headers=served.headers)

    @app.post("/feedback")
    async def feedback(request: Request):
        """One event {user_id, item_id, scenario, clicked, timestamp?} or a list of them."""
        served = app.state.served
        data, refused = await body_json(request)
        if refused is not None:
            return refused
        events = [data] if isinstance(data, dict) else data
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
            return refuse(422, "invalid request", f"the body: send one event or a list of 1 to "
                          f"{MAX_EVENTS:,} events")
        try:
            parsed = FEEDBACK.validate_python(events)
        except ValidationError as e:
            return refuse(422, "invalid request", _first_error(e, FeedbackEvent, "events"))
        try:
            clicks = await run_in_threadpool(served.history.record,
                                             [Event(**e.model_dump()) for e in parsed])
        except RequestError as e:
            return refuse(422, "invalid request", str(e))
        return JSONResponse({"events": len(parsed), "clicks": clicks}, headers=served.headers)

    @app.post("/recommend")
    async def recommend(request: Request):
        served = app.state.served
        if served.recommender is None:
            return refuse(404, "no retrieval", "this server has no retrieval run: start it with "
                          "`recsys serve --retrieval RUN` (a two_tower run with `recsys index`)")
        parsed, refused = await parsed_body(request, RecommendBody)
        if refused is not None:
            return refused
        if parsed.k > parsed.candidates:
            return refuse(422, "invalid request", f"k: {parsed.k} is more than the "
                          f"{parsed.candidates} candidates retrieved; ask for at most that many")
        try:
            found = await run_in_threadpool(served.recommender.recommend, parsed.user_id,
                                            parsed.scenario, parsed.k, parsed.exclude,
                                            parsed.candidates, parsed.context)
        except RequestError as e:
            return refuse(422, "invalid request", str(e))
        for stage, seconds in found.seconds.items():
            metrics.stages.labels(stage).observe(seconds)
        return JSONResponse({"items": [
            {ITEM_ID: item, "score": float(score),
             "retrieval_score": None if found.retrieval_scores is None else
             float(found.retrieval_scores[i])}
            for i, (item, score) in enumerate(zip(found.item_ids, found.rank_scores))],
            "source": found.source}, headers=served.headers)

    @app.get("/health")
    def health():
        served = app.state.served
        return JSONResponse({"status": "ok", "reloads": served.scorer.features.reloads},
                            headers=served.headers)

    @app.get("/metadata")
    def metadata():
        served = app.state.served
        return JSONResponse({**served.scorer.info,
                             "limits": {"max_candidates": MAX_CANDIDATES,
                                        "max_body_bytes": MAX_BODY_BYTES},
                             "retrieval": served.recommender.info if served.recommender else None,
                             "watch": settings.watch or None, "versions": _versions()},
                            headers=served.headers)

    @app.get("/metrics")
    def prometheus():
        return PlainTextResponse(generate_latest(_all_workers() or metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):  # one request fails, not the server
        metrics.refused.labels("server error").inc()
        return JSONResponse({"error": f"server error: {type(error).__name__}: {error}"},
                            status_code=500, headers=app.state.served.headers)

    if settings.watch:
        app.state.watcher = _watch(app, settings, metrics)
    return app


def _watch(app: FastAPI, settings: Settings, metrics: _Metrics) -> RunWatcher:
    """Follow `--watch DIR`: a new run is loaded and checked here, in the watcher's thread,
    while the serving one answers; then one assignment swaps it in."""
    def load(run: Path) -> Served:
        serving = app.state.served
        scorer = Scorer(run, Path(settings.repo), settings.refresh_seconds)
        try:
            check_swappable(serving.scorer, scorer)
        except BaseException:
            scorer.close()
            raise
        return Served.of(scorer, serving.recommender)

    def swap(new: Served) -> None:
        old, app.state.served = app.state.served, new
        metrics.serving.labels(*old.labels()).set(0)
        metrics.serving.labels(*new.labels()).set(1)
        old.scorer.close()  # stops its cache refresh; requests still on it finish

    return RunWatcher(Path(settings.watch), settings.watch_seconds, Path(settings.run), load,
                      swap, lambda result: metrics.swaps.labels(result).inc()).start()


class _Measured:
    """Counts and times every request, and refuses a declared body over the limit before it is
    read. Plain ASGI: an `@app.middleware` costs a task and a stream per request."""

    def __init__(self, app, metrics: _Metrics, too_large):
        self.app, self.metrics, self.too_large = app, metrics, too_large

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        size = dict(scope["headers"]).get(b"content-length")
        try:
            if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
                await self.too_large()(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(scope["path"], str(status)).inc()
            self.metrics.latency.labels(scope["path"]).observe(time.perf_counter() - start)


def _all_workers() -> CollectorRegistry | None:
    """Under `--workers N` every worker counts into files of one folder (prometheus_client's
    multiprocess mode), so /metrics, whichever worker answers it, sums all of them."""
    folder = os.environ.get(METRICS_DIR_ENV)
    if not folder:
        return None
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry


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


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (`recsys serve --workers N`)."""
    return create_app(Settings(**json.loads(os.environ[SETTINGS_ENV])))
