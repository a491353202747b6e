# `make demo`: set up, then train and evaluate the demo detector (RetinaNet R-18) on the phantom set.
# `make test`: set up, then run the default test suite (CI runs exactly this).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cxr-d2-setup
DEMO_CONFIG ?= configs/Phantom/retinanet_R_18_FPN_cpu.yaml

.PHONY: setup demo test test-slow clean

setup: $(STAMP)

$(STAMP): setup.py tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || \
		$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

demo: setup
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG)

test: setup
	$(PY) -m pytest -q -m "not slow" tests projects/SipMask/tests

test-slow: setup
	$(PY) -m pytest -q -m slow tests projects/SipMask/tests

clean:
	rm -rf $(VENV) .cache output
