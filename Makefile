# caffelite: one gate for people and CI.  Everything runs inside .venv/ at the repository root.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PB2    := caffelite/proto/caffe_pb2.py

.PHONY: all venv proto test lint pytest demo bench golden clean

all: test

# The environment: rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=68" "grpcio-tools==1.85.1"
	# PyTorch's CPU build for the torch engine's tests (pinned: a bare `torch` may pull a CUDA build)
	$(PY) -m pip install -q torch==2.13.0 || echo "torch 2.13.0 unavailable: the PyTorch engine's tests skip"
	$(PY) -m pip install -q --no-build-isolation -e ".[test,all]"
	touch $@

venv: $(STAMP)

# caffe_pb2.py is generated, never committed; rebuilt only when the schema changes.
$(PB2): proto/caffe.proto proto/build_proto.py | $(STAMP)
	$(PY) proto/build_proto.py --force

proto: $(PB2)

lint: $(STAMP)
	$(PY) -m ruff check caffelite tests examples benchmarks proto

pytest: $(STAMP) $(PB2)
	$(PY) -m pytest

test: lint pytest

demo: $(STAMP) $(PB2)
	$(PY) examples/softmax_loss/run.py
	@if [ -f examples/digits/train.py ]; then $(PY) examples/digits/train.py; fi

# OpenCV 4.14 (the last with a Caffe importer) goes into its own folder, never into .venv itself (the tests
# use OpenCV 5 there): benchmarks/inference.py runs it in a subprocess with PYTHONPATH=$(OPENCV4).
OPENCV4 := $(VENV)/opencv4

bench: $(STAMP) $(PB2)
	$(PY) -m pip install -q torch==2.13.0 || echo "torch unavailable: ratios to PyTorch are skipped"
	test -d $(OPENCV4)/cv2 || $(PY) -m pip install -q --target $(OPENCV4) opencv-python-headless==4.14.0.94 \
		|| echo "OpenCV 4.14 could not be installed into $(OPENCV4): inference ratios to OpenCV are skipped"
	$(PY) benchmarks/run.py

golden: $(STAMP) $(PB2)
	$(PY) ../shared/tools/golden_check.py layers ../shared/golden/layers --module caffelite

clean:
	rm -rf $(VENV) build dist *.egg-info $(PB2) .pytest_cache .ruff_cache
