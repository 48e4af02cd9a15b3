#!/usr/bin/env bash
# make fuzz: run every go test -fuzz target of the module for a while each.
# Usage: scripts/fuzz.sh [DURATION]   (default 10s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-10s}
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "== $pkg $f ($T)"
    go test -run '^$' -fuzz "^$f\$" -fuzztime "$T" "$pkg"
  done
done
