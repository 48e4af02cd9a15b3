#!/usr/bin/env bash
# The gateway part of `make demo`: an MCP server written in TypeScript (the
# MCP project's reference server, @modelcontextprotocol/server-everything,
# from npm, unchanged) behind mcpca-gateway, which enforces a Cedar policy
# on every request of the demo's certificates.
#
#   scripts/demo-gateway.sh DEMO_DIR CA_URL
#
# Needs node and npm (it says so and skips otherwise); the npm packages of
# scripts/interop-gateway are installed once into $MCPCA_NODE_CACHE
# (default ~/.cache/mcpca), shared with `make test`. The gateway listens on
# $GATEWAY_ADDR (default 127.0.0.1:9445). Every process it starts is
# stopped when it ends, also on Ctrl-C or failure.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEMO=$(cd "$1" && pwd)
URL=$2
BIN=${BIN:-$REPO/bin}
case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
M="$BIN/mcpca"
G="$BIN/mcpca-gateway"
ADDR=${GATEWAY_ADDR:-127.0.0.1:9445}
GW_URL="https://$ADDR/mcp"
POLICY="$REPO/scripts/policies/everything.cedar"

. "$REPO/scripts/demo-lib.sh"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "Gateway act skipped: node and npm are not installed (they run the TypeScript MCP server)"
  exit 0
fi
if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then
  echo "Something already listens on $ADDR: stop it or set GATEWAY_ADDR=127.0.0.1:PORT" >&2
  exit 1
fi
[ -x "$G" ] || (cd "$REPO" && go build -o "$BIN/" ./cmd/mcpca-gateway)

PIDS=()
cleanup() {
  local code=$?
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  if [ $code -ne 0 ]; then echo "gateway demo failed (exit $code); logs: $DEMO/gateway.log, $DEMO/everything.log" >&2; fi
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The same npm cache as TestInteropGateway: keyed by the package.json hash.
SRC="$REPO/scripts/interop-gateway"
CACHE=${MCPCA_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcpca}
WORK="$CACHE/interop-gateway-$(sha256sum "$SRC/package.json" | cut -c1-12)"
mkdir -p "$WORK"
cp "$SRC/package.json" "$SRC/everything.mjs" "$SRC/interop.mjs" "$WORK/"
if [ ! -f "$WORK/node_modules/.mcpca-installed" ]; then
  say "Installing the TypeScript MCP server from npm (once, into $WORK)"
  (cd "$WORK" && npm install --no-audit --no-fund --prefer-offline --loglevel=error) && touch "$WORK/node_modules/.mcpca-installed"
fi

cd "$DEMO"
rm -f gateway.log everything.log gateway-audit.log
say "GW 1. A TypeScript MCP server that knows nothing of mcpca, on loopback, plain HTTP"
show "node everything.mjs   # @modelcontextprotocol/server-everything $(sed -n 's/.*"@modelcontextprotocol\/server-everything": "\(.*\)".*/\1/p' "$SRC/package.json"), Streamable HTTP"
PORT=0 node "$WORK/everything.mjs" 2>everything.log >/dev/null &
PIDS+=($!)
UP_PORT=
for _ in $(seq 1 600); do
  UP_PORT=$(sed -n 's/.*{"listening":\([0-9]*\)}.*/\1/p' everything.log | head -1)
  [ -n "$UP_PORT" ] && break
  sleep 0.05
done
[ -n "$UP_PORT" ] || { echo "the TypeScript server did not start" >&2; cat everything.log >&2; exit 1; }
note "upstream: http://127.0.0.1:$UP_PORT/mcp"

say "GW 2. The gateway's own identity, from a one-time token like any server's"
printf '$ TOKEN=$(mcpca token gateway --server --dns localhost --ip 127.0.0.1 --dir pki)\n'
TOKEN=$("$M" token gateway --server --dns localhost --ip 127.0.0.1 --dir pki)
show "$M" enroll --token '$TOKEN' --ca-url "$URL" --root root_ca.crt --cert gateway.crt --key gateway.key
"$M" enroll --token "$TOKEN" --ca-url "$URL" --root root_ca.crt --cert gateway.crt --key gateway.key

say "GW 3. The gateway in front of it: mTLS, the policy on every request, an audit line per decision"
awk '/^@id/{id=$0; sub(/^@id\("/,"",id); sub(/"\)$/,"",id); getline k; printf "   %-20s %s\n", id, (k ~ /^forbid/ ? "forbid" : "permit")}' "$POLICY"
GW_ARGS=(--listen "$ADDR" --cert gateway.crt --key gateway.key --root root_ca.crt --policy "$POLICY"
  --audit gateway-audit.log --crl "$URL/crl" --upstream "http://127.0.0.1:$UP_PORT/mcp")
show "$G" "${GW_ARGS[@]}"
"$G" "${GW_ARGS[@]}" 2>gateway.log &
PIDS+=($!)
for _ in $(seq 1 400); do
  grep -q '"msg":"serving"' gateway.log 2>/dev/null && break
  sleep 0.05
done
grep -q '"msg":"serving"' gateway.log || { echo "the gateway did not start" >&2; cat gateway.log >&2; exit 1; }
note "MCP endpoint: $GW_URL (every command below also passes --url $GW_URL --root root_ca.crt)"

MCP_URL=$GW_URL # for the mcp helpers of demo-lib.sh

say "GW 4. The reader sees only the tools it may call, and calls one"
mcp reader mcp tools
mcp reader mcp call echo --arg message="hello from Go, through the gateway, to TypeScript"
say "GW 5. The admin sees every tool, yet the forbid holds: get-env is never served"
mcp admin mcp tools
mcp_fail admin mcp call get-env
mcp_fail reader mcp call get-env
say "GW 6. The gateway's audit log, verified"
run "$M" audit verify gateway-audit.log
say "GW done. Logs: gateway.log, everything.log; the gateway and the TypeScript server are being stopped."
