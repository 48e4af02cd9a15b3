#!/usr/bin/env bash
# Interop check for `make test`: mcpca's OAuth resource server against
# parties no one at mcpca wrote, each a real process: oidc-provider (npm,
# a certified OpenID provider) issues JWT access tokens by the client
# credentials grant, with a secret and with an mcpca certificate (RFC 8705
# tls_client_auth, tokens bound to it), and the TypeScript MCP SDK's own
# OAuth client (ClientCredentialsProvider) finds mcpca-example's metadata
# from its 401 and calls tools. Needs node and npm; the packages are
# installed once into a cache ($MCPCA_NODE_CACHE, default ~/.cache/mcpca).
# Prints one line saying whether it passed or why it was skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! out=$(go test -count=1 -v -run '^TestInteropOAuth$' ./cmd/mcpca-example 2>&1); then
  echo "$out"
  echo "interop-oauth: FAILED" >&2
  exit 1
fi
if skip=$(grep -o 'interop-oauth SKIPPED.*' <<<"$out" | head -1) && [ -n "$skip" ]; then
  echo "$skip"
else
  grep -E '^\s+ok ' <<<"$out" | sed 's/^\s*/  /'
  pkg=scripts/interop-oauth/package.json
  ver() { sed -n "s|.*\"$1\": \"\(.*\)\".*|\1|p" "$pkg"; }
  echo "interop-oauth: OK (oidc-provider $(ver oidc-provider) tokens, plain and certificate-bound, and the TypeScript MCP SDK $(ver @modelcontextprotocol/sdk) OAuth client at mcpca-example)"
fi
