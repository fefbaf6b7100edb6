# make demo  - install into .venv, seed a local MLflow store, ingest it to out/demo.json, print the report
# make test  - install the test extra into .venv and run every test
# make test-fast - the offline tier: no MLflow server, no Airflow, no browser (under a minute)
# make example - the SDK tutorial flow (examples/tutorial.py) to out/example.json
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Airflow 3 lives in a venv of its own with the connector's core (mlflow-skinny); tests marked
# `airflow` run DAGs there. Skip them locally: make test PYTEST_ARGS='-m "not airflow"'
AIRFLOW_VENV ?= .venv-airflow
PYTEST_ARGS ?=
# The `datahub ingest` plugin is tested against the oldest and the newest acryl-datahub its extra
# allows (>=1.7,<2): the newest is in .venv (the test extra), the oldest in a venv of its own,
# where `make test` runs the tests marked `datahub_versions` once more
# (skipped by make test PYTEST_ARGS='-m "not datahub_versions"').
DATAHUB_OLDEST ?= 1.7.0
DATAHUB_OLDEST_VENV ?= .venv-datahub-oldest
DATAHUB_VERSION_TESTS ?= tests/test_datahub_ingest.py

# MLflow 3 telemetry can stall a process for minutes without internet; a crawler must not phone home.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DATAHUB_TELEMETRY_ENABLED := false
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false

.PHONY: bench-lineage reference demo example test test-fast test-datahub-oldest lint install-browser vendor-js install install-server \
	install-test install-airflow install-datahub-oldest cassettes bench bench-datahub bench-prompts clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.server: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[server]'
	touch $@

$(VENV)/.test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(AIRFLOW_VENV)/.airflow: pyproject.toml
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install -q -e '.[airflow]' 'apache-airflow==3.3.*'
	touch $@

$(DATAHUB_OLDEST_VENV)/.datahub-$(DATAHUB_OLDEST): pyproject.toml
	$(PYTHON) -m venv $(DATAHUB_OLDEST_VENV)
	$(DATAHUB_OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(DATAHUB_OLDEST_VENV)/bin/python -m pip install -q -e '.[datahub]' \
		'acryl-datahub[datahub-lite,duckdb]==$(DATAHUB_OLDEST)' 'mlflow[auth]>=3.17,<3.18' 'pytest>=8' \
		'pytest-timeout>=2.3' 'vcrpy>=6'
	touch $@

install: | $(PY)
	$(PY) -m pip install -q -e .

install-server: $(VENV)/.server
install-test: $(VENV)/.test
install-airflow: $(AIRFLOW_VENV)/.airflow
install-datahub-oldest: $(DATAHUB_OLDEST_VENV)/.datahub-$(DATAHUB_OLDEST)

demo: install-server
	rm -rf .demo && mkdir -p .demo out
	$(PY) -m connector.demo .demo/mlflow.db
	$(VENV)/bin/mlflow-catalog ingest -c recipes/demo.yml --report-file out/demo-report.json
	$(VENV)/bin/mlflow-catalog lineage out/demo.json -o out/demo-lineage.html --title "MLflow lineage: the demo store"
	@echo "open out/demo-lineage.html in a browser (it works offline)"

example: install
	mkdir -p out
	$(PY) -m examples.tutorial out/example.json

# Debian's Chromium for the tests that open the lineage page (marker `browser`); needs root (or sudo).
install-browser:
	@command -v chromium >/dev/null || { $$(command -v sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$(command -v sudo) apt-get install -y -qq chromium >/dev/null; }

# The lineage page's graph library, again from the npm registry, checked against the hash in
# connector/lineage/static/README.md (to upgrade: change both).
CYTOSCAPE_VERSION ?= 3.35.0
vendor-js:
	rm -rf .vendor && mkdir -p .vendor && cd .vendor && npm pack -q cytoscape@$(CYTOSCAPE_VERSION) && tar xzf cytoscape-*.tgz
	grep -q "$$(sha256sum .vendor/package/dist/cytoscape.min.js | cut -d' ' -f1)" connector/lineage/static/README.md
	cp .vendor/package/dist/cytoscape.min.js connector/lineage/static/ && cp .vendor/package/LICENSE connector/lineage/static/LICENSE-cytoscape.txt

# The Airflow venv is only built when the airflow tests are selected.
test: install-test lint install-browser $(if $(findstring not airflow,$(PYTEST_ARGS)),,install-airflow)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	$(if $(findstring not datahub_versions,$(PYTEST_ARGS)),,$(MAKE) test-datahub-oldest)

# The plugin's tests (marker datahub_versions) on the oldest acryl-datahub 1.x.
test-datahub-oldest: install-datahub-oldest
	$(DATAHUB_OLDEST_VENV)/bin/python -c "import importlib.metadata as m; print('acryl-datahub', m.version('acryl-datahub'))"
	$(DATAHUB_OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider -m datahub_versions $(DATAHUB_VERSION_TESTS)

# The offline tier: lint, then the tests that start no server (a test that does is mis-marked
# and fails saying so).
test-fast: lint
	CONNECTOR_OFFLINE_TESTS=1 $(PY) -m pytest -q -p no:cacheprovider -m "not server and not airflow and not browser" $(PYTEST_ARGS)

lint: install-test
	$(VENV)/bin/ruff check connector benchmarks examples testkit tests
	$(VENV)/bin/mypy

# docs/recipe-reference.md and recipes/reference.yml, written from the recipe's pydantic models
reference: install-test
	$(PY) -m connector.config.recipe_reference

cassettes: install-test
	$(PY) -m tests.record_cassettes

# make bench: the crawl against the paging floor, our CLI against our plugin in `datahub ingest` and
# DataHub's floors, an incremental no-change run against a full one (medians of 5 interleaved rounds).
# BENCH_ARGS='--baseline-tree ../before': an older checkout's connector beside ours (git worktree add
# ../before COMMIT); '--memory-scale 5000,50000,1000000': peak RSS by store size (stores built once).
# Then the Prompt Registry's requests with include_prompts on and off (1,000 prompts x 5 versions;
# the store is built once, ~22 min; PROMPT_BENCH_ARGS='--prompts 20' for a quick look).
BENCH_ARGS ?=
PROMPT_BENCH_ARGS ?=
bench: install-test
	$(PY) -m benchmarks.crawl $(BENCH_ARGS)
	$(PY) -m benchmarks.prompts $(PROMPT_BENCH_ARGS)

# The lineage page of the 50k-run benchmark store: its size and time to first render in Chromium
bench-lineage: install-test install-browser
	$(PY) -m benchmarks.lineage

# The crawl through `datahub ingest` (our plugin) beside our CLI and DataHub's own MLflow source
# (which gets a venv of its own, .bench/datahub-venv, created from the package registry once).
bench-datahub: install-test
	$(PY) -m benchmarks.datahub_ingest

# MLflow requests with include_prompts on and off over 1,000 prompts x 5 versions (docs/benchmarks.md)
bench-prompts: install-test
	$(PY) -m benchmarks.prompts $(BENCH_ARGS)

clean:
	rm -rf .demo out build *.egg-info
