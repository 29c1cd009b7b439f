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
import logging
import os
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from recsys.memory import reuse_freed_memory
from recsys.serve.metrics import Measured, ServerMetrics
from recsys.serve.routes import MAX_BODY_BYTES, router, too_large
from recsys.serve.scorer import Scorer
from recsys.serve.settings import Settings
from recsys.serve.state import Serving

SETTINGS_ENV = "RECSYS_SERVE"  # the settings of each worker process (JSON)


def create_app(settings: Settings, scorer: Scorer | None = None) -> FastAPI:
    """The app: the serving state (`state.Serving`), the metrics and the routes."""
    torch.set_num_threads(1)  # one request, one core: concurrency comes from the requests
    reuse_freed_memory()  # a request's tensors reuse the last one's pages

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.serving.close()  # a clean shutdown: the served log's waiting rows written

    app = FastAPI(title="recsys", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.metrics = ServerMetrics()
    app.state.serving = Serving(settings, app.state.metrics, scorer)
    app.add_middleware(Measured, metrics=app.state.metrics, max_body_bytes=MAX_BODY_BYTES,
                       too_large=lambda: too_large(app))
    app.include_router(router)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):  # one request fails, not the server
        app.state.metrics.refused.labels("server error").inc()
        return JSONResponse({"error": f"server error: {type(error).__name__}: {error}"},
                            status_code=500, headers=app.state.serving.served.headers)

    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (`recsys serve --workers N`)."""
    log_to_stderr()  # a worker is a fresh process: its logging is set up again
    return create_app(Settings(**json.loads(os.environ[SETTINGS_ENV])))


def log_to_stderr() -> None:
    """The server's own news (a run swapped in, a worker's load) at INFO on stderr; uvicorn's
    access log stays at its warnings."""
    log = logging.getLogger("recsys.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # a root handler (Feast sets one) would say it twice
