"""How soon a command refuses bad input: `recsys train --dataset <missing>` and `recsys serve
--run <missing>` beside `python -c "import typer"` and beside a one-flag Typer command that
refuses at once (what invoking any Typer command costs: Typer imports pydantic and more to
parse), side by side. A refusal answers before torch, TorchRec, Feast or DuckDB is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RESULTS

RECSYS = str(Path(sys.executable).parent / "recsys")
BARE = """import typer
app = typer.Typer()
@app.command()
def train(dataset: str = typer.Option(None, "--dataset")):
    raise SystemExit(2)
app()
"""
COMMANDS = {
    "import typer": ([sys.executable, "-c", "import typer"], 0),
    "a bare Typer command refusing": ([sys.executable, "-c", BARE, "--dataset", "x"], 2),
    "recsys train --dataset <missing>": ([RECSYS, "train", "--model", "mmoe", "--dataset",
                                          "/nonexistent/dataset"], 2),
    "recsys serve --run <missing>": ([RECSYS, "serve", "--run", "/nonexistent/run"], 2),
}
MOST = 2.0  # a refusal may take at most this many times a bare Typer command's


@pytest.mark.parametrize("name", list(COMMANDS))
def test_refusal_seconds(benchmark, name):
    cmd, code = COMMANDS[name]

    def run():
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == code, done.stderr

    benchmark.group = "refusals beside `import typer`"
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    RESULTS[f"{name} s"] = benchmark.stats.stats.mean
    floor = RESULTS.get("a bare Typer command refusing s")
    if floor is not None and name.startswith("recsys"):
        assert RESULTS[f"{name} s"] <= MOST * floor, (name, RESULTS[f"{name} s"], floor)
