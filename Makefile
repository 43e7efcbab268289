# gifemo — `make train` runs the embedded default, `make test` the fast tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: install train test test-full lint format bench clean

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

train: install
	$(BIN)/python train.py $(ARGS)

test: install
	$(BIN)/python -m pytest -m "not slow and not gpu" $(ARGS)

test-full: install
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check gifemo tests train.py extract.py collect.py
	$(BIN)/ruff format --check gifemo tests train.py extract.py collect.py
	$(BIN)/mypy gifemo

format: install
	$(BIN)/ruff check --fix gifemo tests train.py extract.py collect.py
	$(BIN)/ruff format gifemo tests train.py extract.py collect.py

bench: install
	$(BIN)/python -m gifemo.bench all $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache .mypy_cache .ruff_cache
