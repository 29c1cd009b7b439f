"""benchmarks/render.py: a pytest-benchmark JSON becomes one table per area with the command
that reproduces it, its figures, the ratios and the machine; each part of
benchmarks/RESULTS.md is replaced on its own, the other kept."""

from __future__ import annotations

import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)


def _run_json() -> dict:
    stats = {"mean": 2.5, "min": 2.0, "max": 3.0, "rounds": 3}
    return {"datetime": "2026-12-01T20:00:00.000000+00:00",
            "machine_info": {"cpu_model": "Some CPU", "cores": 2, "memory_gib": 23.5,
                             "gpu": None, "python": "3.11.7", "versions": {"torch": "2.13.0"},
                             "commit": "abcdef1234567890", "dirty": False},
            "benchmarks": [{"fullname": "benchmarks/bench_build_dataset.py::test_build",
                            "name": "test_build", "stats": stats}],
            "recsys": {"preset": "small",
                       "results": [{"name": "build-dataset (Feast)", "value": 2.5,
                                    "module": "bench_build_dataset"},
                                   {"name": "raw DuckDB ASOF join", "value": 2.0,
                                    "module": "bench_build_dataset"},
                                   {"name": "loader rows/s", "value": 123456.7,
                                    "module": "bench_training"},
                                   {"name": "a fixture's figure", "value": 0.5,
                                    "module": ""}],
                       "ratios": [{"name": "build-dataset (Feast) / raw DuckDB ASOF join",
                                   "value": 1.25, "module": "bench_build_dataset"}]}}


def test_one_table_per_area_with_its_command_figures_ratios_and_machine():
    text = render.bench_part(_run_json())
    assert "Commit `abcdef1`. Machine: Some CPU, 2 cores, 23.5 GiB memory, no GPU" in text
    build = text[text.index("### Point-in-time build"):text.index("### Loader")]
    assert ("RECSYS_BENCH_PRESET=small python -m pytest benchmarks/bench_build_dataset.py "
            "--benchmark-only") in build
    assert "| test_build | 2.5 | 2 | 3 | 3 |" in build
    assert "| **build-dataset (Feast) / raw DuckDB ASOF join** | **1.25** |" in build
    assert "| loader rows/s | 123,457 |" in text[text.index("### Loader"):]
    assert "### Serving" not in text  # an area that did not run has no table
    other = text[text.index("### Other figures of the run"):]
    assert "| a fixture's figure | 0.5 |" in other and "loader rows/s" not in other


def test_each_part_is_replaced_on_its_own():
    text = render.replace_part(render.TITLE, "quality", "Q1")
    text = render.replace_part(text, "bench", "B1")
    text = render.replace_part(text, "quality", "Q2")
    assert text.count("<!-- quality:start -->") == 1 and "Q2" in text and "Q1" not in text
    assert "B1" in text and text.startswith("# Benchmark results")
