#!/usr/bin/env bash
# The cost of the MCP adapter (identity/mcpauth) on a tools/call round trip
# over mTLS: the example server with the adapter versus the same server with
# TLS but no adapter, in one run, on one warm connection and on a new
# connection per call. Prints the median p50 of COUNT runs side by side.
#   scripts/bench-mcp.sh [COUNT=5] [CALLS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-5}
CALLS=${2:-2000}
echo "go test -run '^\$' -bench ToolCall -benchtime ${CALLS}x -count $COUNT ./identity/mcpauth"
go test -run '^$' -bench ToolCall -benchtime "${CALLS}x" -count "$COUNT" ./identity/mcpauth | tee /dev/stderr |
awk '
/^BenchmarkToolCall\// {
  split($1, parts, "/"); conn = parts[2]; name = parts[3]; sub(/-[0-9]+$/, "", name)
  for (i = 1; i <= NF; i++) if ($i == "p50-us") p50[conn, name, ++n[conn, name]] = $(i-1)
}
function median(conn, name,   k, m, a, i, j, t) {
  m = n[conn, name]
  for (i = 1; i <= m; i++) a[i] = p50[conn, name, i]
  for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j] < a[j-1]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
  return a[int((m + 1) / 2)]
}
END {
  printf "\n%-10s %14s %14s %9s\n", "connection", "baseline p50", "adapter p50", "overhead"
  split("warm new-conn", conns, " ")
  for (c = 1; c <= 2; c++) {
    b = median(conns[c], "baseline"); a = median(conns[c], "adapter")
    printf "%-10s %11.1f us %11.1f us %+8.1f%%\n", conns[c], b, a, (a - b) / b * 100
  }
}'
