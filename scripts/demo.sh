#!/usr/bin/env bash
# make demo: a CA on embedded defaults, enrolment of a server and two
# clients, inspection, renewal and revocation, told step by step.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-bin}
M="$PWD/$BIN/mcpca"
DEMO=${DEMO_DIR:-$PWD/demo}
ADDR=${DEMO_ADDR:-127.0.0.1:9443}
URL="https://$ADDR"

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*" | sed -E "s#$M#mcpca#g; s#$DEMO/##g; s#eyJ[A-Za-z0-9_.-]+#\$TOKEN#g"; "$@"; }

# tok ARGS...: mint a token into $TOKEN, showing the command.
tok()  { printf '$ TOKEN=$(mcpca token %s)\n' "$*"; TOKEN=$("$M" token "$@"); }

PIDS=()
cleanup() {
  local code=$?
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  if [ $code -ne 0 ]; then echo "demo failed (exit $code); logs are in $DEMO" >&2; fi
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if (exec 3<>/dev/tcp/${ADDR%:*}/${ADDR#*:}) 2>/dev/null; then
  echo "Something already listens on $ADDR: stop it or set DEMO_ADDR=127.0.0.1:PORT" >&2
  exit 1
fi

rm -rf "$DEMO"; mkdir -p "$DEMO"; cd "$DEMO"

say "1. Create a CA: root + intermediate (keys encrypted), an admin provisioner"
run "$M" init --dir pki --name "Demo MCP CA" --trust-domain demo.test --address "$ADDR" --dns localhost >fingerprint.txt
FP=$(grep -E '^[0-9a-f]{64}$' fingerprint.txt) # init prints only the fingerprint on stdout

say "2. Start the CA in the background (JSON log in ca.log)"
"$M" serve --dir pki 2>ca.log &
PIDS+=($!)
for i in $(seq 1 200); do
  grep -q '"event":"start"' ca.log 2>/dev/null && break
  if ! kill -0 "${PIDS[0]}" 2>/dev/null; then cat ca.log; exit 1; fi
  sleep 0.05
done
echo "CA is up at $URL"

say "3. A host that knows only the URL and the fingerprint fetches the root"
run "$M" bootstrap --ca-url "$URL" --fingerprint "$FP" --out root_ca.crt

say "4. Enrol a server and two clients with one-time tokens (keys made locally)"
tok files --server --dns localhost --ip 127.0.0.1 --dir pki --role mcp-server
run "$M" enroll --token "$TOKEN" --ca-url "$URL" --root root_ca.crt --cert server.crt --key server.key
tok reporter --dir pki --role reader --attr team=payments --attr env=prod --ttl 1h
run "$M" enroll --token "$TOKEN" --ca-url "$URL" --root root_ca.crt --cert reader.crt --key reader.key
tok ops-admin --dir pki --role admin --role reader --attr team=platform --ttl 1h
run "$M" enroll --token "$TOKEN" --ca-url "$URL" --root root_ca.crt --cert admin.crt --key admin.key

say "5. A token is one-time: redeeming it again is refused"
if "$M" enroll --token "$TOKEN" --ca-url "$URL" --root root_ca.crt --cert again.crt --key again.key; then
  echo "unexpected: a replayed token was accepted" >&2; exit 1
fi

say "6. What the reader's certificate says"
run "$M" inspect reader.crt

say "7. Renew over mTLS: same identity, roles and attributes, new serial"
run "$M" renew --cert reader.crt --key reader.key --ca-url "$URL" --root root_ca.crt
run "$M" inspect reader.crt --json | grep -E '"(spiffe_id|serial|roles)"|"reader"'

say "8. An MCP server in TypeScript behind mcpca gateway: the same policies, enforced from outside"
BIN="$BIN" "$ROOT/scripts/demo-gateway.sh" "$DEMO" "$URL"

say "9. An MCP server in Go enforces a policy on every request of these identities"
BIN="$BIN" "$ROOT/scripts/demo-mcp.sh" "$DEMO" "$URL"

say "10. The revoked reader can no longer renew either"
if "$M" renew --cert reader.crt --key reader.key --ca-url "$URL" --root root_ca.crt; then
  echo "unexpected: a revoked certificate renewed" >&2; exit 1
fi

say "11. The CA's log: one JSON line per issuance, renewal and revocation"
grep -E '"event":"(issue|renew|revoke)"' ca.log | cut -c1-220

say "Done. Everything is in $DEMO; the CA is being stopped."
