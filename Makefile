# The two commands of the README:
#   make serve   set up, write the demo model repository, serve it on :8080 (REST) and :8081 (gRPC)
#   make test    set up everything the tests need and run the whole suite
SHELL := /bin/bash
# Node.js 20 from the npm registry where the machine's is older (ci/setup-sdks.sh); absent, it changes nothing.
export PATH := $(CURDIR)/.tools/node/bin:$(PATH)
VENV := .venv
PY := $(VENV)/bin/python
DEMO_MODELS ?= demo-models
PYTEST_ARGS ?=

.PHONY: setup setup-test serve demo-models test test-unit test-integration lint chart-check chart-docs bench smoke clean

setup:
	ci/setup-python.sh

setup-test:
	ci/setup-python.sh --test
	ci/install-helm.sh >/dev/null
	ci/install-system-packages.sh >/dev/null
	ci/build-harness.sh kserve >/dev/null
	ci/build-harness.sh keda >/dev/null
	ci/install-chart-tools.sh >/dev/null
	ci/setup-sdks.sh

demo-models: setup
	$(VENV)/bin/predictors make-demo-models $(DEMO_MODELS)

serve: demo-models
	$(VENV)/bin/predictors serve --model-repository $(DEMO_MODELS)

# Two pytest processes: KServe's and tritonclient's gRPC stubs cannot be imported into one process,
# so the tier that calls the real server with tritonclient runs on its own.
test: setup-test
	$(PY) -m pytest tests/unit tests/chart $(PYTEST_ARGS)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)
	$(PY) -m pytest tests/pipeline -m "not container" $(PYTEST_ARGS)

# Builds the image with podman and runs it the way the kubelet runs the chart's pod (~15 min here):
# too long for `make test`'s budget, so the pipeline's smoke stage and this target run it.
smoke: setup-test
	$(PY) -m pytest tests/pipeline -m container $(PYTEST_ARGS)

test-unit: setup-test
	$(PY) -m pytest tests/unit tests/chart $(PYTEST_ARGS)

test-integration: setup-test
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# Helm 3 + 4 lint, render, kubernetes-validate, KServe CRD validation and checkov on every scenario.
chart-check: setup-test
	ci/chart-check.sh

# After editing charts/vision-predictors/values.yaml (or README.md.gotmpl, schema/): regenerate its
# values.schema.json and README.md (helm-values-schema-json, helm-docs; tests/chart checks they are current).
chart-docs: setup
	ci/install-chart-tools.sh >/dev/null
	$(PY) -m devtools.chart

# The benchmark suite (docs/performance.md); BENCH_ARGS=--quick for a short run.
bench: setup
	$(PY) -m bench $(BENCH_ARGS)

# The pipeline's Python lint (ruff, mypy on the package, SDK, bench, ci and devtools, import-linter).
lint:
	ci/lint.sh python

clean:
	rm -rf $(DEMO_MODELS) .pytest_cache .ruff_cache .mypy_cache .hypothesis
