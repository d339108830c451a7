#!/usr/bin/env bash
# Install everything into ./.venv (Python 3.11) and the viewer into ./viewer/ohif. Safe to run again: it skips work when requirements.txt, constraints.txt and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_system.sh  # Orthanc + DICOMweb plugin, chromium (Debian packages, only when missing)
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.medicosam-requirements
want=$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install -r requirements.txt -c constraints.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
.venv/bin/python scripts/install_viewer.py  # OHIF 3.13 from the npm registry, checked, re-based to /ohif/
