"""`recsys serve`: the app under uvicorn, in one process or several. Several workers share a
folder of prometheus_client's multiprocess counts, so /metrics sums every worker's."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import uvicorn

from recsys.serve.app import SETTINGS_ENV, create_app, log_to_stderr
from recsys.serve.metrics import METRICS_DIR_ENV
from recsys.serve.settings import Settings
from recsys.serve.state import check_run
from recsys.serve.swap import SWAP_DIR_ENV, Coordinator, SwapBoard
from recsys.serve.watch import RunWatcher


def serve(settings: Settings, started=print) -> None:
    """Serve until stopped. The run and the repo are loaded (and refused) before the port is
    taken; `started` is told what is served where."""
    log_to_stderr()
    app = create_app(settings)
    watching = f", watching {settings.watch} for newer runs" if settings.watch else ""
    started(f"serving {app.state.serving.served.scorer.info['name']} from {settings.run} on "
            f"http://{settings.host}:{settings.port} ({settings.workers} worker(s){watching})")
    if settings.workers == 1:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
        return
    os.environ[SETTINGS_ENV] = json.dumps(vars(settings))
    serving = app.state.serving.served.scorer.info
    app.state.serving.close()  # each worker loads its own
    with tempfile.TemporaryDirectory(prefix="recsys-metrics-") as counts, \
            tempfile.TemporaryDirectory(prefix="recsys-swap-") as board:
        # the workers' prometheus_client reads it on import, and Feast keeps one already set
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[METRICS_DIR_ENV] = counts
        watcher = _coordinate(settings, serving, Path(board)) if settings.watch else None
        try:
            uvicorn.run("recsys.serve.app:app_from_env", factory=True, host=settings.host,
                        port=settings.port, workers=settings.workers, log_level="warning")
        finally:
            if watcher is not None:
                watcher.close()


def _coordinate(settings: Settings, serving: dict, board: Path) -> RunWatcher:
    """--watch with several workers: this process watches DIR and swaps every worker at once
    (serve.swap); the workers follow the board."""
    os.environ[SWAP_DIR_ENV] = str(board)

    coordinator = Coordinator(SwapBoard(board), settings.workers,
                              lambda run: check_run(serving, run, Path(settings.repo)))
    return RunWatcher(Path(settings.watch), settings.watch_seconds, Path(settings.run),
                      coordinator.offer, coordinator.switch, lambda result: None).start()
