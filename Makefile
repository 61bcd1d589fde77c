# dla-plugins: `make demo` sets up and runs the main job; `make test` sets up and runs the whole suite.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint bench clean

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
	$(PY) -m pytest -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

test-fast: lint  # the quick subset: everything not marked slow
	$(PY) -m pytest -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) -m dla_plugins.tools.cli bench

clean:
	rm -rf .venv build *.egg-info .pytest_cache .ruff_cache
