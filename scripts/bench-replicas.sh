#!/usr/bin/env bash
# make bench-replicas: certificates/s at 16 clients of one mcpca serve on
# bbolt, one on PostgreSQL and two replicas on one PostgreSQL database, in
# one run (alternating rounds), with CPU, round trips and commits per
# certificate. PostgreSQL 15 must be installed (apt-get install
# postgresql-15); the benchmark runs a throwaway cluster of its own.
# Usage: scripts/bench-replicas.sh [-n N] [-c C] [-rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/ ./cmd/mcpca
exec go run ./scripts/bench-replicas -mcpca bin/mcpca "$@"
