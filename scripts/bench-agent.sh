#!/usr/bin/env bash
# Footprint of `mcpca agent` when idle: N identities (default 10) enrolled
# against a local `mcpca serve`, then RSS and CPU over an idle window. When
# bin/step (smallstep/cli) exists, `step ca renew --daemon` on one identity is
# measured the same way, side by side.
# Usage: scripts/bench-agent.sh [N] [IDLE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
IDLE=${2:-30}
mkdir -p bin
go build -o bin/ ./cmd/mcpca ./cmd/mcpca-agent
MCPCA=$PWD/bin/mcpca
# The anchor: smallstep's CLI, built once into bin/step (set STEP= to skip).
if [ -z "${STEP+x}" ] && [ ! -x bin/step ]; then
  echo "building smallstep/cli v0.28.7 into bin/step for the side-by-side run..." >&2
  GOBIN=$PWD/bin CGO_ENABLED=0 go install github.com/smallstep/cli/cmd/step@v0.28.7 >&2 || echo "(could not build bin/step)" >&2
fi
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MCPCA" init --dir pki --name "Bench CA" --trust-domain bench.test --address 127.0.0.1:$PORT --dns localhost >/dev/null
"$MCPCA" serve --dir pki 2>serve.log &
PIDS+=($!)
for _ in $(seq 100); do curl -sk "https://127.0.0.1:$PORT/roots" >/dev/null && break; sleep 0.1; done
ROOT=pki/certs/root_ca.crt
{
  echo "health_addr: 127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  echo "identities:"
  for i in $(seq "$N"); do
    "$MCPCA" token "id$i" --dir pki --ttl 24h >"id$i.token"
    cat <<EOT
  - name: id$i
    ca_url: https://127.0.0.1:$PORT
    root: $ROOT
    cert: id$i/cert.pem
    key: id$i/key.pem
    token_file: id$i.token
EOT
  done
} >agent.yaml
# AGENT_CMD overrides the command (given the config file), e.g. to measure
# another build.
${AGENT_CMD:-"$MCPCA" agent --config} agent.yaml 2>agent.log &
AGENT=$!
PIDS+=($AGENT)
for _ in $(seq 300); do [ "$(grep -c '"msg":"agent: renewing"' agent.log || true)" -ge "$N" ] && break; sleep 0.1; done
[ "$(grep -c '"msg":"agent: renewing"' agent.log)" -ge "$N" ] || { echo "agent did not enrol $N identities" >&2; cat agent.log >&2; exit 1; }

# measure PID: RSS (kB) after settling, CPU seconds over IDLE seconds.
measure() {
  local pid=$1
  sleep 5
  local t0 t1 hz rss
  hz=$(getconf CLK_TCK)
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  sleep "$IDLE"
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  echo "$rss $(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz}')"
}
read -r RSS CPU < <(measure "$AGENT")
printf '%-40s %10s %16s\n' "process" "RSS (MB)" "CPU s / ${IDLE}s idle"
printf '%-40s %10.1f %16s\n' "${AGENT_LABEL:-mcpca agent}, $N identities" "$(echo "$RSS/1024" | bc -l)" "$CPU"

STEP=${STEP:-$OLDPWD/bin/step}
if [ -x "$STEP" ]; then
  "$STEP" ca renew --daemon --ca-url "https://127.0.0.1:$PORT" --root "$ROOT" id1/cert.pem id1/key.pem 2>step.log &
  SPID=$!
  PIDS+=($SPID)
  read -r SRSS SCPU < <(measure "$SPID")
  printf '%-40s %10.1f %16s\n' "step ca renew --daemon, 1 identity" "$(echo "$SRSS/1024" | bc -l)" "$SCPU"
else
  echo "(bin/step not found: build smallstep/cli into bin/step to compare with step ca renew --daemon)"
fi
