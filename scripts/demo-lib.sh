# Shared by the demo scripts (sourced, not run): how they show what they do.
# Needs M (the mcpca binary), DEMO and REPO; MCP_URL for the mcp helpers.
say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
# show prints a command as a user would type it: binaries by name, paths
# relative to the demo directory, the MCP client's --url/--root elided.
show() { printf '$ %s\n' "$*" | sed -E "s#$(dirname "$M")/##g; s#$DEMO/##g; s#$REPO/##g; s# --url [^ ]+ --root root_ca.crt##g"; }
run()  { show "$@"; "$@"; }
# as WHO mcp ...: mcpca's MCP client with WHO.crt/key at $MCP_URL.
as()  { local who=$1; shift; "$M" "$@" --url "$MCP_URL" --cert "$who.crt" --key "$who.key" --root root_ca.crt; }
mcp() { local who=$1; shift; show "$M" "$@" --cert "$who.crt" --key "$who.key"; as "$who" "$@"; }
# mcp_fail WHO mcp ...: a client command that must be refused.
mcp_fail() {
  local who=$1; shift
  show "$M" "$@" --cert "$who.crt" --key "$who.key"
  if as "$who" "$@"; then echo "unexpected: this should have been refused" >&2; return 1; fi
  note "(refused, as it should be)"
}
