# The whole set-up on a fresh machine: `make test` or `make bench`.
# A venv at .venv sees the system's site-packages, so that a GPU machine whose
# torch is preinstalled (and which has no package index) reuses it; elsewhere
# torch==$(TORCH_VERSION) is installed into the venv.
PYTHON ?= python3
TORCH_VERSION ?= 2.14.1
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.deps-ready
EXT_SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' -o -name '*.inc') setup.py
BUILT := fused_rnn/.build-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: all build test bench sanitize sgemm-microbench sgemm-variant-ab pointwise-microbench memcpy-probe clean
SAN := build/sanitize

all: build

# --system-site-packages alone is not enough where $(PYTHON) is itself a venv (the GPU
# machines' python3 lives in /opt/torch/.venv): the new venv would see the base
# interpreter's packages, not that venv's torch. A .pth file adds the creator's own.
$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PYTHON) -c "import site; print('\\n'.join(site.getsitepackages()))" \
	  > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/creator_site_packages.pth"

# Each dependency is installed only when it is not importable already.
$(READY): $(PY) Makefile
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -c "import setuptools" 2>/dev/null || $(PY) -m pip install setuptools
	$(PY) -c "import ninja" 2>/dev/null || command -v ninja >/dev/null || $(PY) -m pip install ninja
	$(PY) -c "import pytest" 2>/dev/null || $(PY) -m pip install pytest
	$(PY) -c "import numpy" 2>/dev/null || $(PY) -m pip install numpy || true
	$(PY) -c "import hypothesis" 2>/dev/null || $(PY) -m pip install hypothesis
	$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install matplotlib || true
	$(PY) -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
	touch $@

$(BUILT): $(READY) $(EXT_SOURCES)
	$(PY) setup.py build_ext --inplace
	touch $@

build: $(BUILT)

test: build
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

bench: build
	$(PY) bench/throughput.py $(BENCH_ARGS)

# The CPU extension built with AddressSanitizer and UndefinedBehaviorSanitizer into a copy
# of the package under $(SAN), and the CPU test suite run against it (CUDA, torch.compile
# and benchmark tests left out: the first need a GPU, the second compile C++ with inductor,
# the third (schedule, report) test bench/ code, no extension code, and bench/ is not copied).
# Python itself is not instrumented, so the ASan runtime is preloaded; leak detection is off
# because CPython and torch keep allocations until exit.
sanitize: $(READY)
	rm -rf $(SAN)/pkg && mkdir -p $(SAN)/pkg
	cp -r tests conftest.py $(SAN)/pkg/ && mkdir -p $(SAN)/pkg/fused_rnn && cp fused_rnn/*.py $(SAN)/pkg/fused_rnn/
	FUSED_RNN_CUDA=0 FUSED_RNN_SANITIZE=1 $(PY) setup.py build_ext --build-temp $(SAN)/tmp --build-lib $(SAN)/pkg
	cd $(SAN)/pkg && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(abspath $(PY)) -m pytest -q -p no:cacheprovider tests \
	  --ignore=tests/test_cuda.py --ignore=tests/test_compile.py --ignore=tests/test_bench_schedule.py --ignore=tests/test_bench_report.py \
	  $(PYTEST_ARGS)

# The profiling aid behind bench/README.md's SGEMM figures (bench/profiling/).
THREADS ?= 1
TORCH_DIR = $(shell $(PY) -c "import os, torch; print(os.path.dirname(torch.__file__))")
# The C++ profiling aids of bench/profiling, compiled as the extension is (setup.py's flags).
PROFILING_CXX = $(CXX) -O3 -std=c++20 -fno-math-errno -fno-trapping-math -fopenmp -Icsrc \
  -I$(TORCH_DIR)/include -I$(TORCH_DIR)/include/torch/csrc/api/include
PROFILING_LIBS = -L$(TORCH_DIR)/lib -ltorch_cpu -lc10 -Wl,-rpath,$(TORCH_DIR)/lib

sgemm-microbench: $(READY)
	mkdir -p build
	$(PROFILING_CXX) bench/profiling/sgemm_microbench.cpp csrc/cpu/sgemm.cpp csrc/cpu/buffer_pool.cpp csrc/cpu/cpu_isa.cpp $(PROFILING_LIBS) \
	  -o build/sgemm_microbench
	build/sgemm_microbench $(THREADS)

# VARIANT: a modified copy of csrc/cpu/sgemm.cpp, timed against it in one process.
# ARGS="whole 2": the whole-sequence products on 2 threads instead of the per-step ones.
sgemm-variant-ab: $(READY)
	test -n "$(VARIANT)" || { echo "usage: make sgemm-variant-ab VARIANT=path/to/sgemm_variant.cpp"; exit 2; }
	mkdir -p build/variant_ab
	cp csrc/cpu/sgemm.h build/variant_ab/sgemm_alt.h
	$(PROFILING_CXX) -Icsrc/cpu -Dsgemm=sgemm_alt -c $(VARIANT) -o build/variant_ab/sgemm_alt.o
	$(PROFILING_CXX) -Ibuild/variant_ab bench/profiling/sgemm_variant_ab.cpp build/variant_ab/sgemm_alt.o \
	  csrc/cpu/sgemm.cpp csrc/cpu/buffer_pool.cpp csrc/cpu/cpu_isa.cpp $(PROFILING_LIBS) -o build/sgemm_variant_ab
	build/sgemm_variant_ab $(ARGS)

pointwise-microbench: $(READY)
	mkdir -p build
	$(PROFILING_CXX) bench/profiling/pointwise_microbench.cpp csrc/cpu/cell_pointwise.cpp \
	  csrc/cpu/sgemm.cpp csrc/cpu/buffer_pool.cpp csrc/cpu/cpu_isa.cpp $(PROFILING_LIBS) -o build/pointwise_microbench
	build/pointwise_microbench

memcpy-probe:
	mkdir -p build
	$(CXX) -O2 bench/profiling/memcpy_probe.cpp -o build/memcpy_probe
	build/memcpy_probe

clean:
	rm -rf build fused_rnn/_C*.so $(BUILT) *.egg-info
