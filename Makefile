# s2c — install, demo, tests.  `make demo` and `make test` install first (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.s2c-installed

.PHONY: install demo test test-fast lint clean-demo

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml Makefile tools/misc/install_mmcv.sh
	@if [ ! -x $(PY) ]; then echo "[install] creating virtual environment $(VENV)"; $(PYTHON) -m venv $(VENV); fi
	@if $(PY) -c "import torch, torchvision; torchvision.ops.nms" >/dev/null 2>&1; then \
	  echo "[install] torch/torchvision already work: $$($(PY) -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__)')"; \
	else \
	  echo "[install] torch===2.13.0 torchvision===0.28.0 (PyPI's matching pair; several GB)"; \
	  $(PIP) install "torch===2.13.0" "torchvision===0.28.0"; \
	fi
	@echo "[install] build tools: setuptools<81 wheel ninja psutil"
	@$(PIP) install -q "setuptools<81" wheel ninja psutil
	@if $(PY) -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" >/dev/null 2>&1; then \
	  echo "[install] mmcv 2.1.0 with ops already installed"; \
	else \
	  bash tools/misc/install_mmcv.sh $(PY); \
	fi
	@echo "[install] s2c (editable) with extras seg,coco,dev"
	@$(PIP) install -q --no-build-isolation -e ".[seg,coco,dev]"
	@touch $(STAMP)
	@echo "[install] done: $$($(PY) -c 'import torch, mmcv, mmengine, s2c; print("torch", torch.__version__, "| mmcv", mmcv.__version__, "| mmengine", mmengine.__version__, "| s2c", s2c.__version__)')"

demo: install
	$(PY) tools/run_demo.py

test: install
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

lint: install
	$(VENV)/bin/ruff check .
