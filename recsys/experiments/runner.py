"""The one runner of every experiment: its spec collects the results (training.py: the arms
over the seeds, summarized and paired), the runner records the datasets' fingerprints and writes
results.json, report.md and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsys.dataset.meta import DatasetMeta, dataset_provenance
from recsys.errors import UsageError
from recsys.experiments.context import Context
from recsys.experiments.spec import Experiment
from recsys.files import write_json


def run(experiment: Experiment, dataset: Path | None, out: Path, seeds: int = 1,
        options: dict[str, Any] | None = None, file: dict | None = None,
        flags: dict | None = None, force: bool = False, progress: bool = True,
        log=print, preset: str | None = None) -> dict:
    """Run `experiment` into `out`: its results, also written to out/results.json beside its
    report and plot."""
    if seeds < 1:
        raise UsageError(f"seeds {seeds}: need at least one seed", fields="seeds")
    if dataset is not None:  # fail early, with the dataset's own message
        meta = DatasetMeta.read(dataset)
        preset = preset or meta.preset
    given = options or {}
    if missing := [o.name for o in experiment.options if o.default is ... and o.name not in given]:
        raise UsageError(f"{experiment.name}: {missing[0]} is needed", fields=missing[0])
    options = {**{o.name: o.default for o in experiment.options}, **given}
    ctx = Context(dataset, out, seeds, options, file or {}, flags or {}, force, progress, log,
                  preset)
    results = experiment.collect(ctx)
    results["datasets"] = [dataset_provenance(d) for d in experiment.datasets(ctx, results)]
    write_json(results, out / "results.json")
    experiment.plot(results, out / experiment.plot_file)
    experiment.report(results, out / "report.md")
    return results
