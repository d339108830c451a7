#!/usr/bin/env bash
# Install (if needed) and run the whole test suite, server tests included (tiny models, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/python -m pytest "$@"
