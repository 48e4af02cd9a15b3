#!/usr/bin/env bash
# The cost of the MCP adapter (identity/mcpauth) on a tools/call round trip
# over mTLS: the example server without the adapter (TLS only), with it
# (audit line written to a file per call, the default) and with audit lines
# batched every 10ms, called in rotation in one run, on one warm connection
# and on a new connection per call. Prints, over COUNT runs, the median of
# each set-up's p50 and the median of the per-run overheads.
#   scripts/bench-mcp.sh [COUNT=7] [CALLS=3000]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-7}
CALLS=${2:-3000}
echo "go test -run '^\$' -bench ToolCall -benchtime ${CALLS}x -count $COUNT ./internal/e2e"
go test -run '^$' -bench ToolCall -benchtime "${CALLS}x" -count "$COUNT" ./internal/e2e | tee /dev/stderr |
awk '
/^BenchmarkToolCall\// {
  split($1, parts, "/"); conn = parts[2]; sub(/-[0-9]+$/, "", conn)
  run[conn]++
  for (i = 2; i <= NF; i++) if ($i ~ /-(p50-us|over-%)$/) v[conn, $i, run[conn]] = $(i-1)
}
function sorted(conn, metric, a,   m, i, j, t) {
  m = run[conn]
  for (i = 1; i <= m; i++) a[i] = v[conn, metric, i]
  for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j] < a[j-1]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
  return m
}
function median(conn, metric,   a, m) { m = sorted(conn, metric, a); return a[int((m + 1) / 2)] }
function range(conn, metric,   a, m) { m = sorted(conn, metric, a); return sprintf("%+.1f..%+.1f%%", a[1], a[m]) }
END {
  printf "\nmedian of %d runs (overhead: median of the per-run overheads, then their range)\n", run["warm"]
  printf "%-10s %14s %14s %9s %16s %18s %9s %16s\n", "connection", "baseline p50", "adapter p50", "overhead", "range", "adapter-batched", "overhead", "range"
  split("warm new-conn", conns, " ")
  for (c = 1; c <= 2; c++) {
    k = conns[c]
    printf "%-10s %11.1f us %11.1f us %+8.1f%% %16s %15.1f us %+8.1f%% %16s\n", k, median(k, "baseline-p50-us"),
      median(k, "adapter-p50-us"), median(k, "adapter-over-%"), range(k, "adapter-over-%"),
      median(k, "adapter-batched-p50-us"), median(k, "adapter-batched-over-%"), range(k, "adapter-batched-over-%")
  }
}'
