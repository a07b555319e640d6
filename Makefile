# The two set-up commands of the README: `make run` and `make test`.
# Both build .venv from scratch if it is missing and install the project with the pinned constraints.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup lint clean results

# `.[all]` includes the `cluster` extra: Dask distributed, for sweeps on `--workers N` and
# `--scheduler` (docs/cluster.md), pinned with the rest in constraints.txt.
$(STAMP): pyproject.toml constraints.txt plugins/sklearn_backend/pyproject.toml \
		plugins/tensorflow_backend/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,test]'
	$(BIN)/pip install --quiet -c constraints.txt -e plugins/sklearn_backend
	$(BIN)/pip install --quiet -c constraints.txt -e plugins/tensorflow_backend
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/harness run experiments/digits_mlp.toml
	$(BIN)/harness plot results/digits_mlp
	$(BIN)/harness report results/digits_mlp

# Regenerate every committed result: each experiment, its plots and report, and the benchmark.
EXPERIMENTS := $(basename $(notdir $(wildcard experiments/*.toml)))
# Experiments whose honest verdict is "not compared" (exit 3): pool_ties' `first` point, whose
# tied max-pool gradients finite differences cannot check (docs/convolutions.md).
NOT_COMPARED := pool_ties
results: $(STAMP)
	for e in $(EXPERIMENTS); do \
	  $(BIN)/harness run experiments/$$e.toml --quiet; rc=$$?; \
	  { [ $$rc -eq 0 ] || { [ $$rc -eq 3 ] && echo " $(NOT_COMPARED) " | grep -q " $$e "; }; } && \
	  $(BIN)/harness plot results/$$e >/dev/null && \
	  $(BIN)/harness report results/$$e || exit 1; \
	done
	$(BIN)/harness bench

# Property tests draw fresh examples on every run; HYPOTHESIS_SEED=N draws seed N's examples
# (CI pins it in .ci/run). How to replay a failure: tests/test_properties.py.
test: $(STAMP)
	$(BIN)/python -m pytest $(if $(HYPOTHESIS_SEED),--hypothesis-seed=$(HYPOTHESIS_SEED))
	$(BIN)/ruff check .

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info
