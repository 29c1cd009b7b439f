"""What the experiments of paired arms share (history, multi-modal): the report of their AUC,
paired gains, logloss and speed, and the plot of their AUC beside the gains."""

from __future__ import annotations

from pathlib import Path

from recsys.eval.report import paired_report
from recsys.experiments.spec import Experiment


class PairedExperiment(Experiment):
    title = ""  # the report's title
    explained = ""  # what its arms are, for the report
    gains = ""  # the gains section's title
    gain_of = ""  # the plot's "Gain from ..."

    def report(self, results: dict, path: Path) -> None:
        paired_report(results, path, self.title, self.explained, self.gains, self.plot_file)

    def plot(self, results: dict, path: Path) -> None:
        from recsys.eval.plots import plot_paired

        plot_paired(results, path, self.gain_of)
