# recsys: `make demo` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
# FLAVOR=gpu installs the CUDA fbgemm-gpu instead of fbgemm-gpu-cpu (on a CUDA machine)
FLAVOR ?= cpu
PRESET ?= small
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(FLAVOR)

.PHONY: setup setup-spark setup-peer setup-redis demo test test-fast bench bench-quality bench-spread bench-rolling bench-feed bench-online bench-real clean

setup: $(STAMP)

# pyspark for `build-dataset --engine spark` (the tests use it; the demo does not)
setup-spark: $(VENV)/.spark

$(VENV)/.spark: $(STAMP)
	$(BIN)/pip install --quiet -e ".[$(FLAVOR),dev,spark]"
	touch $@

# torch-rechub, the peer `make bench` trains beside recsys
setup-peer: $(VENV)/.peer

$(VENV)/.peer: $(STAMP)
	$(BIN)/pip install --quiet -e ".[$(FLAVOR),dev,peer]"
	touch $@

# redis-server (Debian package) for the serving tests on a real Redis online store
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
setup-redis:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; } || \
	  echo "warning: redis-server could not be installed; the tests on it are skipped"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(FLAVOR),dev]"
	$(BIN)/pip install --quiet --no-deps torchrec==1.9.2
	rm -f $(VENV)/.installed-* $(VENV)/.spark $(VENV)/.peer
	touch $@

# The main job on the embedded defaults: generate -> feast apply -> materialize -> training sets
# -> every multi-scenario model trained and evaluated per scenario (report + plot under runs/)
# -> the sharding plan of the full 200M-user scale over 8 x 80 GB GPUs.
demo: setup
	$(BIN)/recsys generate --preset $(PRESET) --force
	cd feature_repo && ../$(BIN)/feast apply
	$(BIN)/recsys materialize
	$(BIN)/recsys build-dataset --force
	$(BIN)/recsys summary
	$(BIN)/recsys experiment multi-scenario --preset $(PRESET) --seeds 1 --force
	$(BIN)/recsys plan --preset full --world-size 8 --device cuda --memory-gb 80

# Two tiers: tests/unit runs in process on hand-made batches (seconds); tests/e2e drives the
# real CLI, Feast, Spark, Redis and uvicorn. make test runs both; two workers, since most e2e
# tests wait on a subprocess on one core, each taking whole modules (--dist loadscope), so a
# module's fixture (its datasets and runs) is built once, not once per worker; in the order
# tests/conftest.py gives them, the longest first (--no-loadscope-reorder).
test: setup setup-spark setup-redis
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder --durations=25 tests

test-fast: setup
	$(BIN)/python -m pytest -q tests/unit

# Throughput and memory on $(PRESET): pytest-benchmark's JSON (also autosaved under .benchmarks/)
# rendered into benchmarks/RESULTS.md, the ratios side by side, the commit and the machine
BENCH_JSON := .benchmarks/latest.json
bench: setup setup-redis setup-peer
	mkdir -p .benchmarks
	RECSYS_BENCH_PRESET=$(PRESET) $(BIN)/python -m pytest -q benchmarks --benchmark-only \
	  --benchmark-columns=min,mean,max,rounds --benchmark-json=$(BENCH_JSON) \
	  --benchmark-autosave; rc=$$?; \
	  test -s $(BENCH_JSON) && $(BIN)/python benchmarks/render.py bench $(BENCH_JSON); exit $$rc

# Quality gates (opt-in): the four experiments over SEEDS seeds on $(PRESET), checked against
# benchmarks/quality_gates.json (exit 1 naming the cells that moved), rendered into
# benchmarks/RESULTS.md
# One seed by default: on `small` on 2 cores two seeds take well over an hour (README,
# "Benchmarks"); gates recorded over K seeds check runs over K seeds only.
SEEDS ?= 1
bench-quality: setup
	$(BIN)/python benchmarks/quality.py --preset $(PRESET) --seeds $(SEEDS)

# The multi-scenario experiment over SPREAD_SEEDS seeds on both backbones, ungated: the spread
# a user reads (its own work folder, runs/bench-spread-<preset>)
SPREAD_SEEDS ?= 3
bench-spread: setup
	$(BIN)/python benchmarks/quality.py --preset $(PRESET) --seeds $(SPREAD_SEEDS) --spread

# The rolling evaluation (a two-week small world, mmoe updated each day against retrained),
# checked against benchmarks/rolling_gates.json, rendered into benchmarks/RESULTS.md
bench-rolling: setup
	$(BIN)/python benchmarks/quality.py --rolling

# The history and retrieval experiments on a feed world (`recsys generate --feed`), over the
# seeds of benchmarks/feed_gates.json, checked against its criteria, rendered likewise
bench-feed: setup
	$(BIN)/python benchmarks/quality.py --feed

# The simulated online A/B test (`recsys experiment online`) of benchmarks/online_gates.json:
# popularity, a run frozen, updated daily and every part of a day, each behind its own server
bench-online: setup
	$(BIN)/python benchmarks/quality.py --online

# Real data: MovieLens-100K (from the recbole wheel, fetched at bench time) in two task forms,
# imported as a user would, every model family at its defaults over 3 seeds beside independent
# references (benchmarks/references/), checked against benchmarks/real_gates.json
bench-real: setup setup-peer
	$(BIN)/python benchmarks/real.py

clean:
	rm -rf feature_repo/data datasets runs .pytest_cache .benchmarks
