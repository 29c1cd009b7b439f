"""Every experiment, by name: what `recsys experiment` makes its commands from."""

from __future__ import annotations

from recsys.experiments.cold_start import ColdStart
from recsys.experiments.history import History
from recsys.experiments.multi_modal import MultiModal
from recsys.experiments.multi_scenario import MultiScenario
from recsys.experiments.online import Online
from recsys.experiments.retrieval import Retrieval
from recsys.experiments.rolling import Rolling
from recsys.experiments.spec import Experiment

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Rolling(), MultiScenario(), ColdStart(), MultiModal(), History(), Retrieval(), Online())}
