#!/usr/bin/env bash
# Install (first run only), build the sample datastore (first run only) and start MedicoSAM Label on 127.0.0.1.
#   ./scripts/start_server.sh [--port 8000] [--studies DIR] [--conf checkpoint /path/vit_b_medicosam.pt] ...
# Without a checkpoint the server still starts; /info says where to put the weights.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
studies=sample-data/datastore
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --studies) studies=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ "$studies" = sample-data/datastore ]; then
  .venv/bin/python sample-data/build_datastore.py --out "$studies" >/dev/null
fi
# One malloc arena for every thread, so the encoder's large tensors stay in the heap between passes
# (medicosam_app/runtime/heap.py); --conf malloc_tuning false or MEDICOSAM_MALLOC_TUNING=false leaves malloc as it is.
tunables=$(.venv/bin/python -m medicosam_app.runtime.heap "${args[@]}")
if [ -n "$tunables" ]; then export GLIBC_TUNABLES="$tunables"; fi
exec .venv/bin/python -m monailabel.main start_server --app apps/medicosam --studies "$studies" --host 127.0.0.1 "${args[@]}"
