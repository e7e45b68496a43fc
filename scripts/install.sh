#!/usr/bin/env bash
# Set up .venv with supernet and everything its tests need. Safe to run again.
# torch is installed first, pinned to 2.13.0, only when the venv lacks it: on this project's
# machines that pin resolves to a local CPU wheel, while an unpinned "torch" would pull several GB
# of CUDA packages. The package itself only asks for torch>=2.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install --quiet torch==2.13.0
fi
.venv/bin/pip install --quiet -e ".[test,export,docs]"
