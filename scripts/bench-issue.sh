#!/usr/bin/env bash
# make bench-issue: issuance throughput of mcpca versus upstream step-ca
# v0.30.2 in one run (same client, same key type, both on bbolt).
# Usage: scripts/bench-issue.sh [-n N] [-c C] [-rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
if [ ! -x bin/step-ca ]; then
  echo "building upstream step-ca v0.30.2 into bin/step-ca (about a minute)..." >&2
  GOBIN="$PWD/bin" CGO_ENABLED=0 go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2
fi
[ -x bin/mcpca ] || go build -o bin/ ./cmd/mcpca
exec go run ./scripts/bench-issue -mcpca bin/mcpca -step-ca bin/step-ca "$@"
