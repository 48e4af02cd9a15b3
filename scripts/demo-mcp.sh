#!/usr/bin/env bash
# The MCP part of `make demo`: an MCP server that checks every request
# against the caller's certificate and a Cedar policy.
#
#   scripts/demo-mcp.sh DEMO_DIR CA_URL [--no-revoke]
#
# DEMO_DIR is where scripts/demo.sh made the CA (pki/, root_ca.crt,
# server.crt/key for spiffe://demo.test/server/files, reader.crt/key for the
# client "reporter" with role reader, admin.crt/key for "ops-admin" with roles
# admin and reader) and CA_URL is the running CA. The binaries come from
# $BIN (default: bin of this repository; built if missing). The MCP server
# listens on $MCP_ADDR (default 127.0.0.1:9444). With --no-revoke the reader
# is not revoked at the end. Every process this script starts is stopped when
# it ends, also on Ctrl-C or failure.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 2 ]; then
  echo "usage: $0 DEMO_DIR CA_URL [--no-revoke]" >&2
  exit 2
fi
DEMO=$(cd "$1" && pwd)
URL=$2
REVOKE=1
[ "${3:-}" = "--no-revoke" ] && REVOKE=0
BIN=${BIN:-$REPO/bin}
case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
M="$BIN/mcpca"
X="$BIN/mcpca-example"
ADDR=${MCP_ADDR:-127.0.0.1:9444}
MCP_URL="https://$ADDR/mcp"
POLICY="$REPO/scripts/policies/mcp-example.cedar"

. "$REPO/scripts/demo-lib.sh"

for f in root_ca.crt server.crt server.key reader.crt reader.key admin.crt admin.key; do
  [ -f "$DEMO/$f" ] || { echo "$DEMO/$f is missing: run scripts/demo.sh first (it makes the CA and the certificates)" >&2; exit 1; }
done
if [ ! -x "$X" ] || [ ! -x "$M" ]; then
  echo "building mcpca and mcpca-example into $BIN"
  (cd "$REPO" && go build -o "$BIN/" ./cmd/mcpca ./cmd/mcpca-example)
fi
if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then
  echo "Something already listens on $ADDR: stop it or set MCP_ADDR=127.0.0.1:PORT" >&2
  exit 1
fi

SERVER_PID=
cleanup() {
  local code=$?
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ $code -ne 0 ]; then echo "MCP demo failed (exit $code); the server's log is $DEMO/mcp-server.log" >&2; fi
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$DEMO"
rm -f mcp-audit.log mcp-server.log

say "MCP 1. The starter policy: readers use read-only tools and docs, admins everything, nobody reads secrets"
awk '/^\/\/ /{c=(inc ? c " " : "") substr($0,4); inc=1; next} {inc=0} /^@id/{id=$0; sub(/^@id\("/,"",id); sub(/"\)$/,"",id); getline k; printf "   %-26s %-7s %s\n", id, (k ~ /^forbid/ ? "forbid" : "permit"), c}' "$POLICY"

say "MCP 2. Start an MCP server that demands a client certificate of this CA on every connection"
show "$X" --listen "$ADDR" --cert server.crt --key server.key --root root_ca.crt --policy "$POLICY" --audit mcp-audit.log --crl "$URL/crl"
"$X" --listen "$ADDR" --cert server.crt --key server.key --root root_ca.crt --policy "$POLICY" \
  --audit mcp-audit.log --crl "$URL/crl" 2>mcp-server.log &
SERVER_PID=$!
for _ in $(seq 1 400); do
  grep -q '"msg":"serving"' mcp-server.log 2>/dev/null && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat mcp-server.log >&2; exit 1; fi
  sleep 0.05
done
grep -q '"msg":"serving"' mcp-server.log || { echo "the MCP server did not start" >&2; cat mcp-server.log >&2; exit 1; }
note "MCP endpoint: $MCP_URL (every command below also passes --url $MCP_URL --root root_ca.crt)"

say "MCP 3. The reader (spiffe://demo.test/client/reporter, role reader) lists tools: only its own are shown"
mcp reader mcp tools
say "MCP 4. The reader calls a tool it may use..."
mcp reader mcp call search_docs --arg query=certificates
mcp reader mcp call whoami
say "MCP 5. ...and one it may not: denied, with the same answer as for a tool that does not exist"
mcp_fail reader mcp call delete_record --arg id=42
mcp_fail reader mcp call no_such_tool

say "MCP 6. The admin (spiffe://demo.test/client/ops-admin, roles admin and reader) sees every tool"
mcp admin mcp tools
mcp admin mcp call delete_record --arg id=42
say "MCP 7. An explicit forbid beats even the admin's permit-everything: secrets are never served"
mcp admin mcp read docs://handbook
mcp_fail admin mcp read file:///secrets/keys.txt

say "MCP 8. The audit log: one hash-chained JSON line per decision (who, what, allow/deny, which policy)"
sed -E 's/.*"seq":([0-9]+).*"spiffe_id":"([^"]*)".*"method":"([^"]*)"(,"target":"([^"]*)")?.*"decision":"([^"]*)","policies":(\[[^]]*\]|null).*/   #\1 \2 \3 \5 -> \6 \7/; s/-> deny (\[\]|null)$/-> deny (no policy permits it: default deny)/' mcp-audit.log
run "$M" audit verify mcp-audit.log

if [ $REVOKE = 1 ]; then
  say "MCP 9. Revoke the reader's certificate; the server refreshes the CRL (here on SIGHUP; by itself every --poll)"
  SERIAL=$("$M" inspect reader.crt --json | sed -n 's/.*"serial": "\([0-9]*\)".*/\1/p')
  run "$M" revoke --serial "$SERIAL" --dir pki --ca-url "$URL" --reason "demo: reader leaves"
  before=$(grep -c '"msg":"reloaded' mcp-server.log || true)
  show kill -HUP "<mcpca-example>"
  kill -HUP "$SERVER_PID"
  for _ in $(seq 1 400); do
    [ "$(grep -c '"msg":"reloaded' mcp-server.log || true)" -gt "$before" ] && break
    sleep 0.05
  done
  grep '"msg":"reloaded' mcp-server.log | tail -1 | sed 's/^/   server: /'
  say "MCP 10. The reader's next connection is refused at the TLS handshake; the admin still gets in"
  mcp_fail reader mcp tools
  grep 'TLS handshake error' mcp-server.log | tail -1 | sed -E 's/.*"msg":"([^"]*)".*/   server: \1/'
  mcp admin mcp call whoami
fi

say "MCP done. The server's log is mcp-server.log, the audit log mcp-audit.log; the MCP server is being stopped."
