#!/usr/bin/env bash
# Interop check for `make test`: the official TypeScript MCP SDK (npm
# @modelcontextprotocol/sdk) talks to the example server with an
# mcpca-issued client certificate. Needs node and npm; the packages are
# installed once into a cache ($MCPCA_NODE_CACHE, default ~/.cache/mcpca).
# Prints one line saying whether it passed or why it was skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! out=$(go test -count=1 -v -run '^TestInteropNode$' ./cmd/mcpca-example 2>&1); then
  echo "$out"
  echo "interop-node: FAILED" >&2
  exit 1
fi
if skip=$(grep -o 'interop-node SKIPPED.*' <<<"$out" | head -1) && [ -n "$skip" ]; then
  echo "$skip"
else
  grep -E '^\s+ok ' <<<"$out" | sed 's/^\s*/  /'
  echo "interop-node: OK (TypeScript MCP SDK $(sed -n 's/.*"@modelcontextprotocol\/sdk": "\(.*\)".*/\1/p' scripts/interop-node/package.json) over mTLS)"
fi
