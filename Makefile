# The two set-up commands of the README: `make run` and `make test`.
# Both build .venv from scratch if it is missing and install the project with the pinned constraints.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/harness run experiments/digits_mlp.toml --force
	$(BIN)/harness plot results/digits_mlp
	$(BIN)/harness report results/digits_mlp

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/ruff check .

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info
