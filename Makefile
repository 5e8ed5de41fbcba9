# `make run`: set up everything from a fresh clone and serve on the embedded store at :8000.
# `make test`: the whole test suite. Both reuse what is already built.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL := models/default/embedder.onnx
REQS := requirements/serve.txt requirements/train.txt requirements/dev.txt
HOST ?= 127.0.0.1
PORT ?= 8000
URL ?= http://127.0.0.1:8000
# Passed through to the tools, e.g. make bench BENCH_ARGS="--store both",
# make loadtest LOADTEST_ARGS="--levels 10,40,80 --duration 10" (each takes --help).
BENCH_ARGS ?=
LOADTEST_ARGS ?=

.PHONY: run test lint typecheck model bench loadtest clean

# A recipe that fails must not leave a half-written target that the next run takes as built.
.DELETE_ON_ERROR:

$(STAMP): $(REQS) pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# pip (not uv/poetry): it takes torch from the local wheel cache where there is one.
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQS))
	# The project itself, editable: its packages import from anywhere and the
	# `centroid-retrieval` command exists; the lock files above already hold every dependency.
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Rebuilt when what decides the default model's graph or contract changes.
$(MODEL): $(STAMP) model/build_default.py model/exporter/default_embedder.py \
		model/exporter/jpeg_draft_option.py artifact/preprocess_spec.py
	$(PY) -m model.build_default --out $(dir $(MODEL))

model: $(MODEL)

run: $(STAMP) $(MODEL)
	$(VENV)/bin/centroid-retrieval serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(MODEL)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP) $(MODEL)
	$(PY) -m bench.service_bench --model $(MODEL) $(BENCH_ARGS)

loadtest: $(STAMP)
	$(PY) -m bench.loadtest --url $(URL) $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) models .pytest_cache .mypy_cache .ruff_cache .import_linter_cache *.egg-info
