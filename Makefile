# gifemo — `make train` runs the embedded default, `make test` the fast tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: install train test test-full lint format bench gpu-wheels clean

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

# Wheels the GPU check needs on a machine that has torch, Lightning, torchmetrics, Pillow and
# tqdm but not PyAV or Hydra (docs/extraction.md, "The GPU check"): CPython 3.12, x86-64 Linux.
GPU_PY ?= 3.12
gpu-wheels: install
	rm -rf .whl && mkdir -p .whl
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) \
	    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux2014_x86_64 -d .whl \
	    $$(grep -E '^(av|hydra-core|omegaconf)==' requirements.txt)
	$(BIN)/pip wheel -q --no-deps -w .whl \
	    antlr4-python3-runtime==$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('antlr4-python3-runtime'))")
	ls -l .whl

clean:
	rm -rf outputs multirun .pytest_cache .mypy_cache .ruff_cache
