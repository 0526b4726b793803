# deltaserve: the two commands a newcomer needs.
#   make demo   install dependencies (as root), build, train CartPole with 8 simulators
#   make test   install dependencies (as root), build, run every test
# and a few more:
#   make build  install what building needs, build the server, client, CLI and
#               simulators (no tests, so no GoogleTest)
#   make bench  build, run the benchmarks (scripts/bench.sh; numbers go to docs/)
#
# Knobs (make VAR=value): BUILD_DIR (build), JOBS (nproc), BUILD_TYPE
# (Release), WERROR (ON; OFF if your compiler warns where GCC 12 does not),
# ARCH_FLAGS (the math core's -march; default native, see README),
# CMAKE_FLAGS (anything else for cmake).
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
BUILD_TYPE ?= Release
WERROR ?= ON
CMAKE_FLAGS ?=
ifneq ($(ARCH_FLAGS),)
CMAKE_FLAGS += "-DDELTASERVE_ARCH_FLAGS=$(ARCH_FLAGS)"
endif
LAUNCHER := $(if $(shell command -v ccache),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache,)
CONFIGURE = cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	-DDELTASERVE_WERROR=$(WERROR) $(LAUNCHER) $(CMAKE_FLAGS)

.PHONY: all deps deps-build build build-all test demo bench format clean

all: build-all

deps:
	bash scripts/install_deps.sh test

deps-build:
	bash scripts/install_deps.sh build

build: deps-build
	$(CONFIGURE) -DDELTASERVE_BUILD_TESTS=OFF -DDELTASERVE_BUILD_BENCHMARKS=OFF
	cmake --build $(BUILD_DIR) -j $(JOBS)

build-all: deps
	$(CONFIGURE) -DDELTASERVE_BUILD_TESTS=ON -DDELTASERVE_BUILD_BENCHMARKS=ON
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build-all
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600 -j $(JOBS)

demo: build-all
	bash scripts/demo.sh $(BUILD_DIR)

bench: build-all
	bash scripts/bench.sh $(BUILD_DIR)

format:
	git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
