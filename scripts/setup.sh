#!/usr/bin/env bash
# Sets up Backdoor Arena on a fresh machine: a virtual environment in .venv,
# torch/torchvision, the project with its test and ray extras (the Ray
# backend's tests start a local Ray instance), and Fashion-MNIST
# (Debian's dataset-fashion-mnist where apt is available; otherwise the
# loader falls back to the torchvision download on first use), and, as
# root with apt, Debian's chromium for the HTML report's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
quiet() {  # run quietly; on failure show the output (minus pip's local-index noise)
    local log; log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then grep -v "^WARNING: Location" "$log" >&2; return 1; fi
}
.venv/bin/python -c "import torch, torchvision" 2>/dev/null || \
    quiet .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
quiet .venv/bin/pip install -q -e '.[test,ray]'
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
   && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null) \
        || echo "setup: apt-get could not install dataset-fashion-mnist; the torchvision download will be tried" >&2
fi
# Headless Chromium, for the test that opens `arena report`'s pages and checks that every picture loads
# (skipped, saying why, without it). Optional: setup goes on if it cannot be installed.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1) \
        || echo "setup: apt-get could not install chromium; the report's browser test will be skipped" >&2
fi
echo "setup: done (.venv ready)" >&2
