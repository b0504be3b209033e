# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo
DEMO_SIZE ?= 256x128
PYTEST_ARGS ?=

.PHONY: demo test venv clean

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/pix2pixhd-jax make-synthetic --out $(DEMO_DIR)/synthetic --num-train 200 --num-test 20 --size $(DEMO_SIZE) --seed 0
	$(VENV)/bin/pix2pixhd-jax show-batch --config configs/synthetic_demo.py \
	    --config.data.dataroot=$(DEMO_DIR)/synthetic --out $(DEMO_DIR)/pipeline_batch.png
	$(VENV)/bin/pix2pixhd-jax train --config configs/synthetic_demo.py --workdir $(DEMO_DIR)/run \
	    --config.data.dataroot=$(DEMO_DIR)/synthetic

test: venv
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR)
