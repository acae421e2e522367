# Two entry points, both self-contained on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# glibc's allocator makes CPU timings swing up to 2x on these tensor sizes (see docs/RESULTS.md).
export MALLOC_MMAP_THRESHOLD_ := 33554432
export MALLOC_TRIM_THRESHOLD_ := 4294967296
export MALLOC_TOP_PAD_ := 1073741824

.PHONY: demo test fuzz venv lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned, so nothing later pulls a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,sd,lora]"
	# only for the real CLIP BPE vocabulary file it ships; --no-deps, as it would pull torchvision
	$(BIN)/pip install -q --no-deps open-clip-torch
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/difflab demo outputs/demo --overwrite

test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest tests --durations=10

# the reader fuzz targets of tests/fuzz with many random examples (about 10 minutes; FUZZ_EXAMPLES=N to
# change); `make test` runs the same targets with a few fixed examples
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest tests/fuzz --hypothesis-show-statistics --durations=0

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_digits.py

clean:
	rm -rf $(VENV) outputs
