"""What a run of an experiment was given, handed to each step of its spec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class Context:
    """What a run of an experiment was given."""

    dataset: Path | None  # None: the experiment builds its own datasets (rolling)
    out: Path
    seeds: int
    options: dict[str, Any]  # the experiment's own options by name
    file: dict  # its --config file
    flags: dict  # epochs / batch size given on the command line
    force: bool
    progress: bool
    log: Callable[[str], None]
    preset: str | None = None  # the workspace's preset, which names default folders
