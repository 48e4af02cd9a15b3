#!/usr/bin/env bash
# The CA as an authorization server and API keys, in one run: tokens/s at
# the CA's token endpoint (16 mTLS clients, keep-alive, in-process CA) and
# the cost of one API key verification (a set of 1000 keys in memory).
# Usage: scripts/bench-oauth.sh [BENCHTIME]   (default 5s)
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-5s}
echo "== token endpoint (16 clients)"
go test -run '^$' -bench '^BenchmarkTokenEndpoint$' -benchtime "$T" -count 3 ./ca/ | grep -E '^Benchmark'
echo "== API key verification"
go test -run '^$' -bench '^BenchmarkVerify$' -benchmem -benchtime "$T" -count 3 ./identity/apikey/ | grep -E '^Benchmark'
