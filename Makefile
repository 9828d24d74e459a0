# tagwatch: `make demo` to watch a live fleet, `make test` to run the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tagwatch-installed
PYTEST_ARGS ?=

.PHONY: demo test lint format typecheck bench bench-all fuzz mosquitto postgresql chromium clean help lock

help:
	@echo "make demo      broker + engine + simulated fleet, live alerts (Ctrl-C stops)"
	@echo "make test      lint + the whole test suite (+ kernel tests without JIT)"
	@echo "make bench     benchmarks (pytest-benchmark; ratios against baselines)"
	@echo "make fuzz      long fuzzing run: 100 000 random examples per target (FUZZ_EXAMPLES=N)"
	@echo "make lint      ruff check + format check"
	@echo "make lock      pin the installed versions in constraints.txt (after make test)"
	@echo "make mosquitto install Debian's mosquitto if it is missing (as root)"
	@echo "make postgresql install Debian's postgresql (the store's PostgreSQL tests) if missing (as root)"
	@echo "make chromium  install Debian's chromium (the console's browser tests) if missing (as root)"
	@echo "make clean     remove the venv, caches and run/"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Record the versions installed now as the ones a fresh clone gets (run after make test).
lock: $(STAMP)
	@{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | \
	   grep -v '^[#-]' | sort -f; } > constraints.txt.new && mv constraints.txt.new constraints.txt
	@echo "constraints.txt: $$(grep -vc '^#' constraints.txt) pinned packages"

mosquitto:
	@bash scripts/ensure-mosquitto.sh

postgresql:
	@bash scripts/ensure-postgresql.sh

chromium:
	@bash scripts/ensure-chromium.sh

demo: $(STAMP) mosquitto
	$(BIN)/tagwatch demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy engine zones devices

test: $(STAMP) mosquitto postgresql chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -W error::pytest.PytestUnraisableExceptionWarning $(PYTEST_ARGS)
	@echo "--- kernel tests again with NUMBA_DISABLE_JIT=1 (coverage sees inside the kernels)"
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -m kernel -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-columns=min,median,max,ops -s

FUZZ_EXAMPLES ?= 100000
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz_long.py --examples $(FUZZ_EXAMPLES)

clean:
	rm -rf $(VENV) run .pytest_cache .ruff_cache .mypy_cache .benchmarks .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
