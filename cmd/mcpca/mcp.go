package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/secretfile"
)

func init() { commands = append(commands, newMcpCmd) }

// mcpFlags are the connection flags of every `mcpca mcp` command.
type mcpFlags struct {
	url, cert, key, root, td, serverID, crl, tokenFile string
	oauth                                              bool
	caURL, scope                                       string
	timeout                                            time.Duration
}

func (f *mcpFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "", "the MCP endpoint, e.g. https://127.0.0.1:8443/mcp (required)")
	fl.StringVar(&f.cert, "cert", "", "client certificate chain, PEM (required unless --token-file)")
	fl.StringVar(&f.key, "key", "", "client private key, PEM (with --cert)")
	fl.StringVar(&f.tokenFile, "token-file", "", "present the OAuth access token in this file (Authorization: Bearer), with or without --cert: for a server started with --token-issuer; a token bound to a certificate (RFC 8705) needs that --cert too")
	fl.BoolVar(&f.oauth, "oauth", false, "get an access token for the server from the CA's token endpoint with --cert (client credentials, mTLS), bound to that certificate (RFC 8705), and present both: for a server started with --token-issuer naming the CA")
	fl.StringVar(&f.caURL, "ca-url", "", "with --oauth: the CA (authorization server) to ask, e.g. https://127.0.0.1:9443 (default: the one the server's RFC 9728 metadata names)")
	fl.StringVar(&f.scope, "scope", "", "with --oauth: the scopes to ask for, space-separated (each one of the certificate's roles)")
	fl.StringVar(&f.root, "root", "", "CA root the server's certificate must chain to, PEM (required)")
	fl.StringVar(&f.td, "trust-domain", "", "trust domain the server's identity must belong to (default: that of --server-id, else of --cert)")
	fl.StringVar(&f.serverID, "server-id", "", "SPIFFE ID the server must have, e.g. spiffe://acme.test/server/files; replaces the check of the --url host against the server's certificate")
	fl.StringVar(&f.crl, "crl", "", "refuse a revoked server: the CA's CRL URL (https://.../crl) or a DER/PEM file")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
	// --url, --root, --cert and --key are not marked: their own checks
	// (withSession, loadRoots) say what to give (an https:// endpoint;
	// mcpca bootstrap; a certificate, a token or both).
}

func newMcpCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Talk to an mTLS-protected MCP server as the holder of a certificate or token",
		Long: `The mcp commands are an MCP client (the official Go SDK over Streamable HTTP)
that presents an mcpca certificate and checks the server's certificate against
the CA's root, so a person can see from the shell what an identity may do:

  mcpca mcp tools --url https://127.0.0.1:8443/mcp --cert reader.crt --key reader.key --root root_ca.crt
  mcpca mcp call search_docs --arg query=roles --url ... --cert ... --key ... --root ...

The server must present a server certificate of the CA, of the trust domain
of --cert (or --trust-domain), for the host of --url (a DNS name or IP
address among its SANs). With --server-id the server must have that SPIFFE
ID instead, whatever host its certificate names. With --crl a revoked server
certificate is refused, and so is one whose revocation status cannot be
established (the CRL cannot be fetched, or is stale).

With --token-file the client presents an OAuth access token (Authorization:
Bearer) to a server that takes tokens (--token-issuer), alone or with --cert
(a token bound to a certificate, RFC 8705, works only with that one).
Without --cert, give --trust-domain or --server-id for the server's check.

With --oauth the client gets the token itself: it reads the server's RFC 9728
metadata (the resource, and the authorization server unless --ca-url), asks
that CA's token endpoint for a token with --cert over mTLS (client
credentials, tls_client_auth), and presents the token, bound to the
certificate, with the certificate:

  mcpca mcp call whoami --oauth --url https://127.0.0.1:8443/mcp --cert alice.crt --key alice.key --root root_ca.crt`,
	}
	cmd.AddCommand(newMcpToolsCmd(), newMcpCallCmd(), newMcpReadCmd())
	return cmd
}

func newMcpToolsCmd() *cobra.Command {
	var f mcpFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tools --url URL (--cert F --key F | --token-file F) --root F",
		Short: "List the tools the server lets this identity use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSession(cmd, &f, func(ctx context.Context, cs *mcp.ClientSession) error {
				res, err := cs.ListTools(ctx, nil)
				if err != nil {
					return fmt.Errorf("listing tools: %w", err)
				}
				out := cmd.OutOrStdout()
				if asJSON {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					return enc.Encode(res.Tools)
				}
				if len(res.Tools) == 0 {
					fmt.Fprintln(out, "(no tools: the policy grants this identity none)")
				}
				for _, t := range res.Tools {
					fmt.Fprintf(out, "%-16s %s\n", t.Name, t.Description)
				}
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the tools as JSON, with their input schemas")
	return cmd
}

func newMcpCallCmd() *cobra.Command {
	var f mcpFlags
	var args []string
	cmd := &cobra.Command{
		Use:   "call TOOL [--arg key=value ...] --url URL (--cert F --key F | --token-file F) --root F",
		Short: "Call a tool and print what it returns",
		Long: `Call calls TOOL with the --arg pairs as arguments and prints the text it
returns. A value is passed as a string when the tool's input schema says
so; otherwise a value that parses as JSON (42, true, {"a":1}) is passed as
such, anything else as a string. It exits 1 when the server refuses the call
("permission denied") or the tool reports an error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			if _, err := parseToolArgs(args, nil); err != nil {
				return err
			}
			return withSession(cmd, &f, func(ctx context.Context, cs *mcp.ClientSession) error {
				var str map[string]bool
				if len(args) > 0 {
					str = stringParams(ctx, cs, pos[0])
				}
				targs, err := parseToolArgs(args, str)
				if err != nil {
					return err
				}
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: pos[0], Arguments: targs})
				if err != nil {
					var jerr *jsonrpc.Error
					if errors.As(err, &jerr) && jerr.Code == mcpauth.CodeDenied {
						return &exitError{code: 1, err: fmt.Errorf("calling %s: %s (the server's policy does not let this identity call it, or there is no such tool: a denial does not say which)", pos[0], jerr.Message)}
					}
					return &exitError{code: 1, err: fmt.Errorf("calling %s: %w", pos[0], err)}
				}
				text := toolText(res)
				if res.IsError {
					return &exitError{code: 1, err: fmt.Errorf("%s failed: %s", pos[0], text)}
				}
				fmt.Fprintln(cmd.OutOrStdout(), text)
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringArrayVar(&args, "arg", nil, "a tool argument key=value (repeatable)")
	return cmd
}

func newMcpReadCmd() *cobra.Command {
	var f mcpFlags
	cmd := &cobra.Command{
		Use:   "read URI --url URL (--cert F --key F | --token-file F) --root F",
		Short: "Read a resource and print its text",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return withSession(cmd, &f, func(ctx context.Context, cs *mcp.ClientSession) error {
				res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: pos[0]})
				if err != nil {
					var jerr *jsonrpc.Error
					if errors.As(err, &jerr) && jerr.Code == mcpauth.CodeDenied {
						return &exitError{code: 1, err: fmt.Errorf("reading %s: %s (the server's policy does not let this identity read it, or there is no such resource: a denial does not say which)", pos[0], jerr.Message)}
					}
					return &exitError{code: 1, err: fmt.Errorf("reading %s: %w", pos[0], err)}
				}
				for _, c := range res.Contents {
					fmt.Fprint(cmd.OutOrStdout(), c.Text)
				}
				return nil
			})
		},
	}
	f.add(cmd)
	return cmd
}

// stringParams returns the parameters of tool that its input schema
// declares as strings, so that --arg id=42 stays "42". It returns nil when
// the tool is not listed to this identity.
func stringParams(ctx context.Context, cs *mcp.ClientSession, tool string) map[string]bool {
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		return nil
	}
	for _, t := range res.Tools {
		if t.Name != tool {
			continue
		}
		schema, _ := t.InputSchema.(map[string]any)
		props, _ := schema["properties"].(map[string]any)
		out := map[string]bool{}
		for k, p := range props {
			if pm, ok := p.(map[string]any); ok && pm["type"] == "string" {
				out[k] = true
			}
		}
		return out
	}
	return nil
}

// parseToolArgs turns key=value pairs into tool arguments. The values of
// the keys in str are strings; others are JSON when they parse as JSON.
func parseToolArgs(pairs []string, str map[string]bool) (map[string]any, error) {
	out := make(map[string]any, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--arg %q: want key=value", p)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--arg %q: %s given twice", p, k)
		}
		var j any
		if str[k] {
			out[k] = v
		} else if err := json.Unmarshal([]byte(v), &j); err == nil {
			out[k] = j
		} else {
			out[k] = v
		}
	}
	return out, nil
}

func toolText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			parts = append(parts, c.Text)
		default:
			b, _ := json.Marshal(c)
			parts = append(parts, string(b))
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		parts = append(parts, string(b))
	}
	return strings.Join(parts, "\n")
}

// withSession connects to the server over mTLS, runs fn and closes.
func withSession(cmd *cobra.Command, f *mcpFlags, fn func(context.Context, *mcp.ClientSession) error) error {
	if f.url == "" {
		return errors.New("missing --url (the MCP endpoint, e.g. https://127.0.0.1:8443/mcp)")
	}
	if !strings.HasPrefix(f.url, "https://") {
		return fmt.Errorf("--url %s: must be https:// (the server authenticates clients by certificate or token)", f.url)
	}
	u, err := url.Parse(f.url)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("--url %s: not a URL with a host, e.g. https://127.0.0.1:8443/mcp", f.url)
	}
	var tlsOpt identity.TLSOption
	var serverID identity.ID
	if f.serverID != "" {
		serverID, err = identity.ParseID(f.serverID)
		if err != nil {
			return fmt.Errorf("--server-id %s: %w", f.serverID, err)
		}
		if serverID.Kind != identity.KindServer {
			return fmt.Errorf("--server-id %s: a %s identity, not a server one (spiffe://TRUST-DOMAIN/server/NAME)", f.serverID, serverID.Kind)
		}
		tlsOpt = identity.WithServerID(serverID)
	} else {
		tlsOpt = identity.WithServerName(u.Hostname())
	}
	if err := checkOAuthFlags(f); err != nil {
		return err
	}
	var token string
	if f.tokenFile != "" {
		if token, err = readBearerToken(f.tokenFile, cmd.ErrOrStderr()); err != nil {
			return err
		}
	}
	var pair *tls.Certificate
	switch {
	case f.cert != "" || f.key != "":
		p, err := loadPair(f.cert, f.key)
		if err != nil {
			return err
		}
		pair = &p
	case token == "":
		return errors.New("missing --cert and --key (or --token-file): the server authenticates clients by certificate or token")
	}
	td, err := serverTrustDomain(f, serverID, pair)
	if err != nil {
		return err
	}
	_, roots, err := loadRoots(f.root)
	if err != nil {
		return err
	}
	b, err := trust.NewBundle(roots)
	if err != nil {
		return fmt.Errorf("%s: %w", f.root, err)
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	store := trust.NewBundleStore(b)
	vopts := []identity.VerifyOption{identity.WithTrustDomains(td)}
	if f.crl != "" {
		fetcher, err := loadCRL(ctx, f.crl, store)
		if err != nil {
			return fmt.Errorf("--crl %s: %w", f.crl, err)
		}
		vopts = append(vopts, identity.WithCRL(fetcher))
	}
	v, err := identity.NewVerifier(store, vopts...)
	if err != nil {
		return err
	}
	tcfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: pair}, v, tlsOpt)
	if pair == nil {
		tcfg.GetClientCertificate = nil
	}
	tr := &http.Transport{TLSClientConfig: tcfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	if f.oauth {
		if token, err = fetchOAuthToken(ctx, f, pair, roots, &http.Client{Transport: tr}); err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	hc := &http.Client{Transport: &refusalTransport{base: tr, token: token}}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpca", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: f.url, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("connecting to %s: %w%s", f.url, err, hint(err))}
	}
	defer cs.Close()
	return fn(ctx, cs)
}

// serverTrustDomain is the trust domain the server must belong to:
// --trust-domain, else that of --server-id, else that of the client's own
// certificate. The CA's certificates name no trust domain, so without any of
// these the command refuses rather than accept any.
func serverTrustDomain(f *mcpFlags, serverID identity.ID, pair *tls.Certificate) (string, error) {
	switch {
	case f.td != "":
		return f.td, nil
	case serverID.TrustDomain != "":
		return serverID.TrustDomain, nil
	case pair == nil:
		return "", errors.New("--token-file without --cert: pass --trust-domain (or --server-id), the trust domain the server's certificate must belong to")
	}
	leaf := pair.Leaf
	if leaf == nil && len(pair.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(pair.Certificate[0])
	}
	if leaf == nil {
		return "", fmt.Errorf("%s: no certificate to take the trust domain from: pass --trust-domain", f.cert)
	}
	id, err := identity.FromCertificate(leaf)
	if err != nil {
		return "", fmt.Errorf("%s: cannot take the server's trust domain from this certificate (%w): pass --trust-domain", f.cert, err)
	}
	return id.ID.TrustDomain, nil
}

// hint explains the usual causes of a refused connection: from the
// reason of the client's own refusal of the server (identity.ReasonOf), or
// from what reaches the client of the server's refusal of it (a TLS alert,
// or a reset when TLS 1.3 lets the client finish first).
func hint(err error) string {
	switch identity.ReasonOf(err) {
	case identity.ReasonWrongHost:
		return "\nhint: the server's certificate is for another host: use a host it names in --url, or pass --server-id with the SPIFFE ID the server must have"
	case identity.ReasonNotAuthorized:
		return "\nhint: the server is not the one --server-id names"
	case identity.ReasonRevoked:
		return "\nhint: the server's certificate is revoked (--crl): do not use this server until it has a new certificate"
	case identity.ReasonTrustDomain:
		return "\nhint: the server belongs to another trust domain than --cert: pass --trust-domain or --server-id if that is intended"
	case identity.ReasonUntrusted:
		return "\nhint: the server's certificate does not chain to --root"
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "bad certificate"), strings.Contains(s, "certificate required"),
		strings.Contains(s, "http2: client conn could not be established"), strings.Contains(s, "certificate rejected"),
		strings.Contains(s, "broken pipe"), strings.Contains(s, "connection reset by peer"):
		return "\nhint: the server refused this client certificate (revoked, expired, or issued by another CA); the server's log says why"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "\nhint: is the server running and listening on that address?"
	}
	return ""
}

// refusalTransport turns the adapter's JSON refusals (401/403/429) into errors
// that carry their message, instead of the SDK's bare status line, and
// presents the bearer token, if any.
type refusalTransport struct {
	base  http.RoundTripper
	token string
}

func (t *refusalTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.token != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || (resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden &&
		resp.StatusCode != http.StatusTooManyRequests) {
		return resp, err
	}
	defer resp.Body.Close()
	var body struct{ Error, Detail string }
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) != nil || body.Error == "" {
		return nil, fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if body.Detail != "" {
		return nil, fmt.Errorf("server answered %s: %s: %s", resp.Status, body.Error, body.Detail)
	}
	return nil, fmt.Errorf("server answered %s: %s", resp.Status, body.Error)
}

// readBearerToken reads a bearer token from file: one line, warning when group
// or others can read it.
func readBearerToken(file string, warn io.Writer) (string, error) {
	b, err := secretfile.Read(file, warn)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || len(tok) > 16<<10 || strings.ContainsAny(tok, " \t\r\n\",") {
		return "", fmt.Errorf("--token-file %s: not one access token (one line of at most 16 KiB, no spaces)", file)
	}
	return tok, nil
}
