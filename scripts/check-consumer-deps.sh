#!/usr/bin/env bash
# A module that imports the library packages a workload uses (agent,
# agent/daemon, identity/mcpauth) must not need the CA's dependencies: after `go mod tidy`
# its go.sum has no smallstep/certificates line. The tests of the packages
# a module imports count for its go.sum, so real-CA tests live in
# internal/e2e, not beside those packages.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/go.mod" <<MOD
module example.com/consumer

go 1.26

require github.com/mcpca/mcpca v0.0.0

replace github.com/mcpca/mcpca => $repo
MOD
cat > "$tmp/main.go" <<'GO'
package main

import (
	_ "github.com/mcpca/mcpca/agent"
	_ "github.com/mcpca/mcpca/agent/daemon"
	_ "github.com/mcpca/mcpca/identity/mcpauth"
)

func main() {}
GO
(cd "$tmp" && GOFLAGS=-mod=mod go mod tidy)
if grep -q 'smallstep/certificates' "$tmp/go.sum"; then
	echo "check-consumer-deps: a module importing agent, agent/daemon and identity/mcpauth needs smallstep/certificates in its go.sum:" >&2
	(cd "$tmp" && go mod why -m github.com/smallstep/certificates) >&2 || true
	exit 1
fi
echo "check-consumer-deps: OK ($(wc -l < "$tmp/go.sum") go.sum lines, no smallstep/certificates)"
