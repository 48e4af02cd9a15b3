#!/usr/bin/env bash
# Interop check for `make test`: mcpca-gateway between parties no one at
# mcpca wrote, each a real process: the official TypeScript MCP SDK (npm
# @modelcontextprotocol/sdk) as the client, with mcpca-issued client
# certificates, and the MCP project's reference server (npm
# @modelcontextprotocol/server-everything, Streamable HTTP) as the
# upstream; and a second gateway in front of mcpca-example over mTLS.
# Needs node and npm; the packages are installed once into a cache
# ($MCPCA_NODE_CACHE, default ~/.cache/mcpca). Prints one line saying
# whether it passed or why it was skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! out=$(go test -count=1 -v -run '^TestInteropGateway$' ./cmd/mcpca-gateway 2>&1); then
  echo "$out"
  echo "interop-gateway: FAILED" >&2
  exit 1
fi
if skip=$(grep -o 'interop-gateway SKIPPED.*' <<<"$out" | head -1) && [ -n "$skip" ]; then
  echo "$skip"
else
  grep -E '^\s+ok ' <<<"$out" | sed 's/^\s*/  /'
  pkg=scripts/interop-gateway/package.json
  ver() { sed -n "s/.*\"@modelcontextprotocol\/$1\": \"\(.*\)\".*/\1/p" "$pkg"; }
  echo "interop-gateway: OK (TypeScript MCP SDK $(ver sdk) and server-everything $(ver server-everything) through mcpca-gateway over mTLS)"
fi
