#!/usr/bin/env bash
# make bench-gateway: tools/call round trips against one go-sdk upstream
# (the example server, stateful Streamable HTTP, own process) three ways in
# one run: direct over mTLS, through mcpca-gateway (mTLS, Cedar policy,
# audit log) and through nginx as a plain mTLS reverse proxy; rounds in
# rotation, medians and per-round ratios. Then the gateway's RSS idle and
# with SESSIONS open sessions, and BenchmarkFilterResult1000 (a 1,000-tool
# list filtered: a caller's first list, a list again, FilterResult alone),
# medians of FILTER_COUNT runs.
# About 1.5 minutes by default; longer runs:
#   ROUNDS=9 CALLS=5000 DURATION=5s ./scripts/bench-gateway.sh
# Environment: ROUNDS (5), CALLS (2000 sequential calls per variant and
# round), CONC (16 clients), DURATION (2s per variant and round), SESSIONS
# (1000), FILTER_COUNT (5), NGINX (path of nginx; installed with apt-get
# when missing and run as root), GATEWAY_CPUPROFILE (a file: the gateway
# runs in-process in the bench program under the CPU profiler; read it with
# go tool pprof; SIGUSR1 to it writes FILE.heap, done with the sessions open),
# GATEWAY_ARGS (extra gateway flags, e.g. --no-caller-assertion), GATEWAY_ENV
# (extra environment of the gateway only, e.g. GOGC=50), GATEWAY_BEFORE (another
# mcpca-gateway binary, e.g. the last commit's, measured side by side as
# "before"). Extra arguments go to scripts/bench-gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
NGINX=${NGINX:-$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)}
if [ -z "$NGINX" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing nginx (apt-get install -y nginx)..." >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  else
    echo "nginx is missing (apt-get install nginx): measuring direct and gateway only" >&2
  fi
fi
[ -n "$NGINX" ] && echo "nginx: $("$NGINX" -v 2>&1)"
mkdir -p bin
go build -o bin/ ./cmd/mcpca-gateway
go build -o bin/bench-gateway ./scripts/bench-gateway
args=(-gateway bin/mcpca-gateway -nginx "$NGINX" -rounds "${ROUNDS:-5}" -calls "${CALLS:-2000}"
  -c "${CONC:-16}" -duration "${DURATION:-2s}" -sessions "${SESSIONS:-1000}")
[ -n "${GATEWAY_CPUPROFILE:-}" ] && args+=(-gateway-cpuprofile "$GATEWAY_CPUPROFILE")
[ -n "${GATEWAY_ARGS:-}" ] && args+=(-gateway-args "$GATEWAY_ARGS")
[ -n "${GATEWAY_ENV:-}" ] && args+=(-gateway-env "$GATEWAY_ENV")
[ -n "${GATEWAY_BEFORE:-}" ] && args+=(-gateway-before "$GATEWAY_BEFORE")
bin/bench-gateway "${args[@]}" "$@"
echo
echo "go test -run '^\$' -bench FilterResult1000 -count ${FILTER_COUNT:-5} ./identity/gateway/"
out=$(go test -run '^$' -bench FilterResult1000 -count "${FILTER_COUNT:-5}" ./identity/gateway/)
echo "$out"
echo "$out" | awk '/^BenchmarkFilterResult1000\// { name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkFilterResult1000\//, "", name)
  if (!(name in n)) order[++k] = name; v[name, ++n[name]] = $3 }
function median(name,   i, j, t, m, a) {
  m = n[name]; for (i = 1; i <= m; i++) a[i] = v[name, i]
  for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j] < a[j-1]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
  return a[int((m + 1) / 2)] / 1e6
}
END {
  for (i = 1; i <= k; i++) {
    m = median(order[i])
    printf "filtering a 1,000-tool list, %s: median %.2f ms over %d runs (goal <= 1 ms) %s\n", order[i], m, n[order[i]], (m <= 1 ? "[met]" : "[MISSED]")
  }
}'
