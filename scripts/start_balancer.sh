#!/usr/bin/env bash
# HAProxy (Debian's haproxy) in front of several MedicoSAM servers on one PACS, annotators pinned by session.
#   ./scripts/start_balancer.sh --port 8000 --replica 127.0.0.1:8001 --replica 127.0.0.1:8002 [--bind 127.0.0.1]
#                               [--config-dir DIR] [--background]
# Pinning, in order: the browser's cookie MEDICOSAM_REPLICA (set on the first answer), else a hash of the
# Authorization header (one signed-in annotator, one replica), else of the client_id parameter the Slicer
# module sends; requests with none of them are spread round robin. HAProxy asks each replica's /readyz every
# 2 s and takes it out of rotation after 3 failures; its annotators then go to another one (their labels are
# in the PACS). Each answer names the replica that served it in the X-MedicoSAM-Replica header.
# See docs/replicas.md.
set -euo pipefail
cd "$(dirname "$0")/.."
port=8000
bind=127.0.0.1
config_dir=balancer
background=0
replicas=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --replica) replicas+=("$2"); shift 2 ;;
    --config-dir) config_dir=$2; shift 2 ;;
    --background) background=1; shift ;;
    *) echo "start_balancer.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ ${#replicas[@]} -ge 1 ] || { echo "start_balancer.sh: name at least one --replica HOST:PORT" >&2; exit 2; }
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$haproxy" ] || { echo "HAProxy is not installed: run ./scripts/install_system.sh" >&2; exit 1; }
mkdir -p "$config_dir"
config="$config_dir/haproxy.cfg"
{
  cat <<CFG
global
  maxconn 1024

defaults
  mode http
  timeout connect 5s
  # a cold 3D propagation or a training request can take minutes; the servers bound their own work
  timeout client 15m
  timeout server 15m
  timeout http-request 30s
  option forwardfor

frontend medicosam
  bind $bind:$port
  default_backend replicas

backend replicas
  http-request set-var(txn.annotator) req.hdr(authorization)
  http-request set-var(txn.annotator) url_param(client_id) if !{ var(txn.annotator) -m found }
  balance hash var(txn.annotator)
  hash-type consistent
  cookie MEDICOSAM_REPLICA insert indirect nocache httponly
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 2s fall 3 rise 2
  http-response set-header X-MedicoSAM-Replica %[srv_name]
CFG
  n=0
  for replica in "${replicas[@]}"; do
    n=$((n + 1))
    echo "  server replica$n $replica check cookie replica$n"
  done
} > "$config.tmp"
mv "$config.tmp" "$config"
"$haproxy" -c -q -f "$config"
if [ "$background" = 1 ]; then
  "$haproxy" -D -p "$config_dir/haproxy.pid" -f "$config"
  echo "HAProxy on http://$bind:$port for ${replicas[*]} (pid $(cat "$config_dir/haproxy.pid"), config $config)"
else
  exec "$haproxy" -db -f "$config"
fi
