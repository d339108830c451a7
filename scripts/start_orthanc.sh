#!/usr/bin/env bash
# Start Orthanc with DICOMweb on 127.0.0.1 (HTTP only from this machine, no DICOM port unless asked).
#   ./scripts/start_orthanc.sh [--port 8042] [--storage DIR] [--dicom-port 4242] [--background]
# Storage defaults to ./orthanc-storage. In the foreground (default) Orthanc runs until Ctrl-C; with
# --background the script waits until DICOMweb answers, prints the URL and leaves Orthanc running
# (its PID is in DIR/orthanc.pid, its log in DIR/orthanc.log). Load the sample series with
#   .venv/bin/python scripts/upload_dicom.py --dicomweb http://127.0.0.1:8042/dicom-web
set -euo pipefail
cd "$(dirname "$0")/.."
port=8042
storage=orthanc-storage
dicom_port=""
background=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --storage) storage=$2; shift 2 ;;
    --dicom-port) dicom_port=$2; shift 2 ;;
    --background) background=1; shift ;;
    *) echo "start_orthanc.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v Orthanc >/dev/null || { echo "Orthanc is not installed: run ./scripts/install_system.sh" >&2; exit 1; }
plugin=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
[ -f "$plugin" ] || { echo "The Orthanc DICOMweb plugin is missing ($plugin): run ./scripts/install_system.sh" >&2; exit 1; }
mkdir -p "$storage"
storage=$(cd "$storage" && pwd)
dicom_enabled=false
[ -n "$dicom_port" ] && dicom_enabled=true
cat > "$storage/orthanc.json" <<JSON
{
  "Name": "MedicoSAM-Orthanc",
  "StorageDirectory": "$storage/db",
  "IndexDirectory": "$storage/db",
  "HttpPort": $port,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": $dicom_enabled,
  "DicomPort": ${dicom_port:-4242},
  "DicomAet": "MEDICOSAM",
  "Plugins": ["$plugin"],
  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/",
    "EnableWado": true,
    "WadoRoot": "/wado",
    "Host": "127.0.0.1:$port",
    "Ssl": false,
    "StudiesMetadata": "Full",
    "SeriesMetadata": "Full"
  }
}
JSON
if [ "$background" = 0 ]; then
  exec Orthanc "$storage/orthanc.json"
fi
Orthanc "$storage/orthanc.json" >"$storage/orthanc.log" 2>&1 &
echo $! > "$storage/orthanc.pid"
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$port/dicom-web/studies" >/dev/null 2>&1; then
    echo "http://127.0.0.1:$port/dicom-web"
    exit 0
  fi
  kill -0 "$(cat "$storage/orthanc.pid")" 2>/dev/null || { echo "Orthanc exited; see $storage/orthanc.log" >&2; tail -20 "$storage/orthanc.log" >&2; exit 1; }
  sleep 0.5
done
echo "Orthanc did not answer on port $port in 60 s; see $storage/orthanc.log" >&2
exit 1
