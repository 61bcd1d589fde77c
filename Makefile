# dla-plugins: `make demo` sets up and runs the main job; `make test` sets up and runs the whole suite.
PY := .venv/bin/python
PYTEST_ARGS ?=
# Two workers on CI's 2 cores; a test file stays on one worker (its module fixtures are built once).
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: setup demo test test-fast lint bench gpu-wheels gpu-check-smoke clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m dla_plugins.tools.cli zoo
	$(PY) -m dla_plugins.tools.cli demo
	$(PY) -m timm_ext.train --demo
	$(PY) -m d2_ext.demo
	$(PY) -m mmseg_ext.demo

lint: setup
	.venv/bin/ruff check .

test: lint
	$(PY) -m pytest -p no:cacheprovider $(XDIST) --durations=25 $(PYTEST_ARGS)

test-fast: lint  # the quick subset: everything not marked slow
	$(PY) -m pytest -p no:cacheprovider $(XDIST) -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.bench

# Python 3.12 wheels (+ the mmcv sdist) for the lent GPU machine, which has no registry: into .whl/ (git-ignored).
gpu-wheels:
	bash scripts/gpu_wheels.sh

# The CPU dry run of `python -m benchmarks.gpu_check` (scripts/gpu_run.sh runs the real one on a CUDA machine).
gpu-check-smoke: setup
	$(PY) -m benchmarks.gpu_check --device cpu --smoke

clean:
	rm -rf .venv build *.egg-info .pytest_cache .ruff_cache
