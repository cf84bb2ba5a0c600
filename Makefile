# Two entry points (see README): `make demo` and `make test`. Each sets itself up
# idempotently: a .venv with the project installed, and Chromium for browser tests.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUNDLE ?= cached_features/cifar10_resnet20
PORT   ?= 8501

.PHONY: setup browser demo test lint bench bundles layers clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade-strategy only-if-needed -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the Playwright browser tests (no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing Debian chromium + chromium-driver"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

demo: setup
	$(VENV)/bin/ash-explore dashboard $(BUNDLE) --port $(PORT) \
	  $(if $(wildcard ../shared/data),--data-root ../shared/data,)

# pytest runs in 2 worker processes (pytest-xdist; `-n 2 --dist loadfile` in pyproject's
# addopts); the browser test's CI matrix when CI is set (docs/testing.md)
test: setup browser
	$(PY) -m ruff check ash_core dashboard tests benchmarks
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check ash_core dashboard tests benchmarks

bench: setup layers
	$(PY) benchmarks/run_all.py --quick  # bench_layers.py needs the maps of `make layers`

# Rebuild the five demo bundles in cached_features/ from ../shared/data (deterministic;
# `python scripts/build_demo_bundles.py --check` verifies the committed features instead).
bundles: setup
	$(PY) scripts/build_demo_bundles.py

# "Where to ASH" maps (layer1..3 + tails) for the CIFAR-10 ResNet demos, and the token maps of
# blocks.0..3 for the hybrid ViT when its trained weights are in weights/ (else a note says how
# to train them), on a spread subset of rows, into git-ignored cached_features/<name>.layers
# (a few minutes on 2 CPU cores), then ResNet-20's ASH-S layer cubes (any p at its inner
# layers a lookup in the dashboard from the first move): about 830 s CPU, 11 min wall on the
# shared 2 cores at load 3 (two worker processes). Skip them with
# `$(PY) scripts/build_layer_bundles.py --no-cubes`; `--cubes all` builds every bundle's.
layers: setup
	$(PY) scripts/build_layer_bundles.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
