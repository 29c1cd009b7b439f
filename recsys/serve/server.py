"""`recsys serve`: the app under uvicorn, in one process or several. Several workers share a
folder of prometheus_client's multiprocess counts, so /metrics sums every worker's."""

from __future__ import annotations

import json
import logging
import os
import tempfile

import uvicorn

from recsys.serve.app import SETTINGS_ENV, create_app
from recsys.serve.metrics import METRICS_DIR_ENV
from recsys.serve.settings import Settings


def _log_swaps() -> None:
    """The server's own news (a run swapped in by --watch) at INFO on stderr; uvicorn's access
    log stays at its warnings."""
    log = logging.getLogger("recsys.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def serve(settings: Settings, started=print) -> None:
    """Serve until stopped. The run and the repo are loaded (and refused) before the port is
    taken; `started` is told what is served where."""
    _log_swaps()
    app = create_app(settings)
    watching = f", watching {settings.watch} for newer runs" if settings.watch else ""
    started(f"serving {app.state.serving.served.scorer.info['name']} from {settings.run} on "
            f"http://{settings.host}:{settings.port} ({settings.workers} worker(s){watching})")
    if settings.workers == 1:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
        return
    os.environ[SETTINGS_ENV] = json.dumps(vars(settings))
    app.state.serving.close()  # each worker loads its own
    with tempfile.TemporaryDirectory(prefix="recsys-metrics-") as counts:
        # the workers' prometheus_client reads it on import, and Feast keeps one already set
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[METRICS_DIR_ENV] = counts
        uvicorn.run("recsys.serve.app:app_from_env", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers, log_level="warning")
