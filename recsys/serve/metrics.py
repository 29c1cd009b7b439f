"""A server's Prometheus metrics: requests by endpoint and status, latencies, refusals by
reason, the serving run and the swaps; `Measured` counts and times every request. Under
`--workers N` every worker counts into one folder and /metrics sums them."""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
# the folder where the workers of `--workers N` count (prometheus_client's multiprocess mode;
# its own PROMETHEUS_MULTIPROC_DIR cannot tell, as Feast sets it on import in every process)
METRICS_DIR_ENV = "RECSYS_SERVE_METRICS_DIR"


class ServerMetrics:
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
        self.log_latest = Gauge("recsys_log_latest_seconds", "The offline log's latest event "
                                "time (seconds since the epoch)", registry=self.registry,
                                multiprocess_mode="max")
        self.materialized = Gauge("recsys_view_materialized_until_seconds", "Each feature "
                                  "view's materialized-until (the end of Feast's last "
                                  "interval)", ["view"], registry=self.registry,
                                  multiprocess_mode="max")
        self.pending_days = Gauge("recsys_log_days_not_materialized", "The log's days new or "
                                  "changed since the last `recsys materialize` (-1: it never "
                                  "ran)", registry=self.registry, multiprocess_mode="max")
        self.swaps = Counter("recsys_swaps", "Runs a watching server tried, by result (swapped "
                             "| refused)", ["result"], registry=self.registry)


class Measured:
    """Counts and times every request, and refuses a declared body over the limit before it is
    read. Plain ASGI: an `@app.middleware` costs a task and a stream per request."""

    def __init__(self, app, metrics: ServerMetrics, max_body_bytes: int, too_large):
        self.app, self.metrics, self.too_large = app, metrics, too_large
        self.max_body_bytes = max_body_bytes

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
            if size is not None and (not size.isdigit() or int(size) > self.max_body_bytes):
                await self.too_large()(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(scope["path"], str(status)).inc()
            self.metrics.latency.labels(scope["path"]).observe(time.perf_counter() - start)


def all_workers() -> CollectorRegistry | None:
    """Under `--workers N` every worker counts into files of one folder (prometheus_client's
    multiprocess mode), so /metrics, whichever worker answers it, sums all of them."""
    folder = os.environ.get(METRICS_DIR_ENV)
    if not folder:
        return None
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry
