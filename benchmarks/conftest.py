"""Benchmarks run on RECSYS_BENCH_PRESET (default: small). Paired measurements are collected in
RESULTS and printed as ratios at the end, measured side by side in the same run."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.features.feature_store import copy_definitions

ROOT = Path(__file__).resolve().parents[1]
PRESET = os.environ.get("RECSYS_BENCH_PRESET", "small")
RESULTS: dict[str, float] = {}  # name -> mean seconds, or a rate where the name says so
AREA: dict[str, str] = {}  # name -> the benchmark module that measured it


def copy_repo(dest: Path) -> Path:
    """A fresh copy of feature_repo/ (definitions only, no data)."""
    return copy_definitions(ROOT / "feature_repo", dest)


NO_HISTORY = "without_history"  # the benchmark repos' default service less the user's history


def generated_repo(dest: Path, preset=None) -> Path:
    """The benchmark preset (or `preset`) generated into a fresh repo copy whose schema also
    declares NO_HISTORY, `feast apply`-ed."""
    from recsys.data.generate import generate
    from recsys.data.offline import read_schema
    from recsys.data.presets import get_preset
    from recsys.schema import HISTORY_VIEW, SCHEMA_FILE

    repo = copy_repo(dest)
    generate(repo, preset or get_preset(PRESET), seed=0, workers=2, progress=False)
    schema = read_schema(repo)
    views = tuple(v for v in schema.services[schema.default_service] if v != HISTORY_VIEW.name)
    dataclasses.replace(schema, services={**schema.services, NO_HISTORY: views}).save(
        repo / SCHEMA_FILE)
    subprocess.run([str(Path(sys.executable).parent / "feast"), "apply"], cwd=repo, check=True,
                   capture_output=True)
    return repo


@pytest.fixture(scope="session")
def applied_repo(tmp_path_factory) -> Path:
    """The benchmark preset generated into a fresh repo copy and `feast apply`-ed."""
    return generated_repo(tmp_path_factory.mktemp("bench") / "feature_repo")


def tenth(users_and_items: bool = False):
    """The benchmark preset at a tenth of its rows (and of its users and items)."""
    from recsys.data.presets import get_preset

    preset = get_preset(PRESET)
    rows = get_preset(PRESET, preset.n_rows // 10)
    return dataclasses.replace(rows, n_users=preset.n_users // 10,
                               n_items=preset.n_items // 10) if users_and_items else rows


@pytest.fixture(scope="session")
def built_dataset(applied_repo, tmp_path_factory) -> Path:
    from recsys.dataset.build import build_dataset

    out = tmp_path_factory.mktemp("ds") / "ds"
    build_dataset(applied_repo, out, progress=False)
    return out


MMOE_EPOCH = ["train", "--model", "mmoe", "--epochs", "1"]  # recsys's defaults otherwise


@pytest.fixture(scope="session")
def mmoe_run(built_dataset, tmp_path_factory) -> Path:
    """One epoch of `recsys train --model mmoe` on the built dataset (the default batch, seed 0: the
    defaults), trained once and shared by the benchmarks that serve it or compare with it."""
    out = tmp_path_factory.mktemp("mmoe") / "run"
    subprocess.run([str(Path(sys.executable).parent / "recsys"), *MMOE_EPOCH, "--dataset",
                    str(built_dataset), "--out", str(out)], check=True, capture_output=True)
    return out


def two_tower(dataset: Path, out: Path) -> Path:
    """One epoch of `recsys train --model two_tower` on `dataset` (recsys's defaults else)."""
    subprocess.run([str(Path(sys.executable).parent / "recsys"), "train", "--model",
                    "two_tower", "--epochs", "1", "--dataset", str(dataset), "--out", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def two_tower_run(built_dataset, tmp_path_factory) -> Path:
    """two_tower on the built dataset, shared by the retrieval and /recommend benchmarks."""
    return two_tower(built_dataset, tmp_path_factory.mktemp("two-tower") / "run")


def run_figures(out: Path) -> dict:
    """A finished run's own training examples/s and test AUC (its metrics, read through the
    run module)."""
    from recsys.run import Run

    metrics = Run(out).metrics()
    return {"examples_per_s": metrics["train"]["examples_per_s"],
            "auc": metrics["overall"]["auc"]}


# Ratios that matter, each measured side by side in one run: (numerator, denominator)
def ratio_pairs() -> list[tuple[str, str]]:
    from recsys.models.registry import model_names

    return [("build-dataset (Feast)", "raw DuckDB ASOF join"),
            *((f"build peak RSS bytes, 10x rows, {h} the history",
               f"build peak RSS bytes, 1x rows, {h} the history") for h in ("with", "without")),
            *((f"build {what}, {size} rows, with the history",
               f"build {what}, {size} rows, without the history")
              for what in ("s", "peak RSS bytes") for size in ("1x", "10x")),
            ("loader rows/s", "mmoe training examples/s"),
            ("mmoe full step examples/s, beside its floor", "mmoe dense-floor examples/s"),
            *((f"{m} ({b}) examples/s", "mmoe (mlp) examples/s")
              for b in ("mlp", "dcn") for m in model_names(family="multi-scenario")),
            ("dnn_mixed step, 2,000,000 users", "dnn_mixed step, 100,000 users"),
            *((f"{m} training examples/s", "dnn_mixed training examples/s")
              for m in ("dropoutnet", "metaemb", "maml", "melu")),
            *((f"{m}+text examples/s (text bench)", f"{m} examples/s (text bench)")
              for m in ("dnn_mixed", "mmoe")),
            ("generate rows/s, 2 worker(s)", "generate rows/s, 1 worker(s)"),
            ("/score sqlite, 100 candidates p99 ms", "/score redis, 100 candidates p99 ms"),
            ("/score sqlite with the history, 100 candidates p99 ms",
             "/score sqlite, 100 candidates p99 ms"),
            *((f"/feedback sqlite, 4 worker(s), 8 clients {p} ms",
               f"/feedback sqlite, 1 worker(s), 8 clients {p} ms") for p in ("p50", "p99")),
            *((f"/score sqlite with the served log, 100 candidates {p} ms",
               f"/score sqlite without the served log, 100 candidates {p} ms")
              for p in ("p50", "p99")),
            ("/score sqlite, 100 candidates p99 ms",
             "feast serve /get-online-features, 1 user + 100 items p99 ms"),
            ("/score sqlite, 100 candidates p50 ms",
             "feast serve /get-online-features, 1 user + 100 items p50 ms"),
            ("mmoe examples/s, 2 process(es)", "mmoe examples/s, 1 process(es)"),
            ("exact top-100 over 1M vectors, one core, mean ms",
             "ANN top-100 over 1M vectors, one core, mean ms"),
            *((f"recsys index {what}, 10x items", f"recsys index {what}, 1x items")
              for what in ("items/s", "peak RSS bytes")),
            ("model-only scoring, 500 candidates, artifact int8 examples/s",
             "model-only scoring, 500 candidates, eager fp32 examples/s"),
            *((f"/score sqlite with the history, int8 artifact, {n} candidates p99 ms",
               f"/score sqlite with the history, run, {n} candidates p99 ms") for n in (100, 500)),
            *((f"/score sqlite with the history, {w}, 500 candidates p99 ms",
               f"/score sqlite with the history, {w}, 100 candidates p99 ms")
              for w in ("run", "int8 artifact")),
            ("/recommend sqlite, k 20 of 500 candidates p99 ms",
             "/score sqlite, 100 candidates p99 ms"),
            *((f"recsys {c} s", f"{floor} s") for c in ("train --dataset <missing>",
                                                         "serve --run <missing>")
              for floor in ("import typer", "a bare Typer command refusing")),
            *((k, k.replace("recsys", "torch-rechub", 1)) for k in list(RESULTS)
              if k.startswith(("recsys mmoe examples/s, ", "recsys din examples/s, ")))]


def ratios() -> list[dict]:
    return [{"name": f"{a} / {b}", "value": RESULTS[a] / RESULTS[b], "module": AREA[a]}
            for a, b in ratio_pairs() if a in RESULTS and b in RESULTS]


@pytest.fixture(autouse=True)
def _remember_area(request):
    """Every RESULTS entry a benchmark module sets belongs to that module's area, those its
    module-scoped fixtures set (before this fixture starts) included."""
    yield
    for name in RESULTS:
        AREA.setdefault(name, request.module.__name__)


def pytest_benchmark_update_machine_info(config, machine_info):
    from recsys.provenance import machine_facts

    machine_info.update(machine_facts())


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """What benchmarks/render.py turns into benchmarks/RESULTS.md, besides the timings."""
    output_json["recsys"] = {
        "preset": PRESET,
        "results": [{"name": k, "value": v, "module": AREA.get(k, "")} for k, v in RESULTS.items()],
        "ratios": ratios()}


def pytest_terminal_summary(terminalreporter):
    for name, value in RESULTS.items():
        terminalreporter.write_line(f"[{PRESET}] {name}: {value:,.4g}")
    for r in ratios():
        terminalreporter.write_line(f"[{PRESET}] {r['name']} = {r['value']:.2f}")
