# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo
DEMO_SIZE ?= 256x128
PYTEST_ARGS ?=

.PHONY: demo test venv browser clean

$(VENV)/.installed: requirements.txt requirements-test.txt requirements-onnx.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-onnx.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The editor's browser test drives Debian's chromium: installed here when missing (as root, with
# apt-get); elsewhere that test skips.
browser:
	@command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "chromium not installed: the browser test (tests/test_serve_e2e.py) will skip"

demo: venv
	$(VENV)/bin/pix2pixhd-jax make-synthetic --out $(DEMO_DIR)/synthetic --num-train 200 --num-test 20 --size $(DEMO_SIZE) --seed 0
	$(VENV)/bin/pix2pixhd-jax show-batch --config configs/synthetic_demo.py \
	    --config.data.dataroot=$(DEMO_DIR)/synthetic --out $(DEMO_DIR)/pipeline_batch.png
	$(VENV)/bin/pix2pixhd-jax train --config configs/synthetic_demo.py --workdir $(DEMO_DIR)/run \
	    --config.data.dataroot=$(DEMO_DIR)/synthetic

# The quick tests, then the slow ones (whole CLI processes, XLA:TPU compiles) in their own bounded
# step: SLOW_LIMIT seconds in all, each test at most the pytest timeout in pyproject.toml. Both
# steps share one JAX compilation cache (the slow step's processes compile the quick step's tiny
# models again), removed at the end.
SLOW_LIMIT ?= 1500
test: venv browser
	cache=$$(mktemp -d -t pix2pixhd_jax_tests_XXXXXX) && trap 'rm -rf "$$cache"' EXIT && \
	PIX2PIXHD_TEST_JAX_CACHE=$$cache $(PY) -m pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS) && \
	PIX2PIXHD_TEST_JAX_CACHE=$$cache timeout $(SLOW_LIMIT) $(PY) -m pytest -n 2 --dist loadgroup -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR)
