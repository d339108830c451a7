#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): every GPU speed figure, this project beside segment_anything, in one run.
# Installs nothing: uses the project's environment (.venv from scripts/install.sh) when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
exec "$python" benchmarks/gpu_check.py "$@"
