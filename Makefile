# Two entry points: `make quickstart` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: quickstart test test-all bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# torchattacks (tests compare our FGSM/PGD with it) pins an old requests it never imports:
	# installed without its dependencies
	$(BIN)/python -m pip install --quiet --no-deps torchattacks==3.5.1
	# OpenMixup's augment functions, the peer of benchmarks/bench_mixers.py: a folder of their own
	# (as a package OpenMixup needs mmcv; the benchmark loads the augment modules one by one)
	$(BIN)/python -m pip install --quiet --no-deps --target $(VENV)/openmixup openmixup==0.2.9
	# OpenCV's saliency module, which tests/test_mixers_saliencymix.py checks our SaliencyMix saliency
	# against: opencv-contrib shares the cv2 package with the opencv-python the others need, so it
	# gets a folder of its own that only that test's subprocess puts on its path
	$(BIN)/python -m pip install --quiet --no-deps --target $(VENV)/opencv-contrib opencv-contrib-python-headless==5.1.0.95
	touch $@

quickstart: $(VENV)/.installed
	$(BIN)/cutmix-eval quickstart

test: $(VENV)/.installed
	$(BIN)/ruff check cutmix_eval tests benchmarks examples
	$(BIN)/python -m pytest -q

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "slow or not slow"

# every benchmarks/bench_*.py -> benchmarks/results.md (BENCH_ARGS=--quick for less, "--only cam ood_metrics")
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
