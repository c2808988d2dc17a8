# Front door. `make run` and `make test` are the two commands README.md gives a newcomer.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
DEB_PACKAGES := cmake g++ make libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools \
                libboost-program-options-dev nlohmann-json3-dev libgtest-dev python3 \
                clang libclang-rt-14-dev
# perf/plots.py and perf/study.py (and their CI tests): figures and the study's ANOVA.
DEB_PACKAGES += python3-h5py python3-numpy python3-matplotlib python3-statsmodels
PROMPTS ?= inputs/prompts.jsonl
RUN_OUT ?= $(BUILD_DIR)/results/default.h5
RUN_MODEL ?= $(BUILD_DIR)/models/tiny-olmoe

.PHONY: all build deps run test test-gpu clean

all: build

# Installs the Debian packages that are missing (only when run as root; otherwise says which).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing (run 'make deps' as root)"; exit 1; fi; \
	fi

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The default job: a small random OLMoE-shaped checkpoint made here, run on the prompts file.
$(RUN_MODEL)/config.json: | build
	$(BUILD_DIR)/moetron model make --family olmoe --preset tiny --out $(RUN_MODEL) --seed 1

run: deps build $(RUN_MODEL)/config.json
	mkdir -p $(dir $(RUN_OUT))
	$(BUILD_DIR)/moetron run --model $(RUN_MODEL) --prompts $(PROMPTS) --out $(RUN_OUT)

test: deps build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -LE gpu

# On the GPU machine: the gpu-labelled tests (kernels, whole model, graphs).
test-gpu: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L gpu

clean:
	rm -rf $(BUILD_DIR)
