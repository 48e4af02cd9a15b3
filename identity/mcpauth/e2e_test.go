package mcpauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

const stateful = "2025-11-25"

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func toolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

// auditLines returns the audit records written so far.
func auditLines(t testing.TB, e *env) []identity.AuditRecord {
	t.Helper()
	var recs []identity.AuditRecord
	for _, l := range strings.Split(strings.TrimSpace(e.audit.String()), "\n") {
		if l == "" {
			continue
		}
		var r identity.AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestMCP(t *testing.T) {
	p := newPKI(t)
	for _, mode := range []struct {
		name      string
		stateless bool
		version   string
	}{
		{"stateful", false, stateful},
		{"stateless", true, ""},
	} {
		t.Run(mode.name, func(t *testing.T) {
			e := startServer(t, p, envOptions{stateless: mode.stateless})
			reader, _ := e.mustConnect(t, p.reader, mode.version)
			admin, _ := e.mustConnect(t, p.admin, mode.version)

			t.Run("allowed", func(t *testing.T) {
				out, err := call(t, reader, mcpexample.ToolSearchDocs, map[string]any{"query": "certificates"})
				if err != nil || !strings.Contains(out, "document(s) mention") {
					t.Fatalf("search_docs as reader: %q, %v", out, err)
				}
				out, err = call(t, reader, mcpexample.ToolWhoAmI, nil)
				if err != nil || out != "spiffe://acme.test/client/alice roles=reader" {
					t.Fatalf("whoami: %q, %v", out, err)
				}
				out, err = call(t, admin, mcpexample.ToolDeleteRecord, map[string]any{"id": "42"})
				if err != nil || out != "record 42 deleted" {
					t.Fatalf("delete_record as admin: %q, %v", out, err)
				}
			})

			t.Run("denied", func(t *testing.T) {
				_, err := call(t, reader, mcpexample.ToolDeleteRecord, map[string]any{"id": "42"})
				if err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
					t.Fatalf("delete_record as reader: want %q, got %v", mcpauth.DeniedMessage, err)
				}
				_, err = reader.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceSecrets})
				if err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
					t.Fatalf("secrets as reader: %v", err)
				}
				// The explicit forbid beats the admin's permit-everything.
				_, err = admin.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceSecrets})
				if err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
					t.Fatalf("secrets as admin: %v", err)
				}
				res, err := reader.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceHandbook})
				if err != nil || !strings.Contains(res.Contents[0].Text, "Handbook") {
					t.Fatalf("handbook as reader: %v", err)
				}
				if _, err := reader.GetPrompt(ctxT(t), &mcp.GetPromptParams{Name: mcpexample.PromptSummarize, Arguments: map[string]string{"uri": "docs://handbook"}}); err != nil {
					t.Fatalf("summarize as reader: %v", err)
				}
			})

			t.Run("denial does not reveal existence", func(t *testing.T) {
				_, errForbidden := call(t, reader, mcpexample.ToolDeleteRecord, nil)
				_, errUnknown := call(t, reader, "no_such_tool", nil)
				if errForbidden == nil || errUnknown == nil || errForbidden.Error() != errUnknown.Error() {
					t.Fatalf("forbidden and unknown tools answer differently:\n%v\n%v", errForbidden, errUnknown)
				}
				_, errForbidden = reader.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceSecrets})
				_, errUnknown = reader.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: "file:///secrets/nope.txt"})
				if errForbidden == nil || errUnknown == nil || errForbidden.Error() != errUnknown.Error() {
					t.Fatalf("forbidden and unknown resources answer differently:\n%v\n%v", errForbidden, errUnknown)
				}
				_, errForbidden = reader.GetPrompt(ctxT(t), &mcp.GetPromptParams{Name: "nope"})
				if errForbidden == nil || !strings.Contains(errForbidden.Error(), mcpauth.DeniedMessage) {
					t.Fatalf("unknown prompt: %v", errForbidden)
				}
			})

			t.Run("list filtering", func(t *testing.T) {
				if got, want := toolNames(t, reader), []string{"get_weather", "search_docs", "whoami"}; !slices.Equal(got, want) {
					t.Errorf("reader tools = %v, want %v", got, want)
				}
				if got, want := toolNames(t, admin), []string{"delete_record", "get_weather", "search_docs", "whoami"}; !slices.Equal(got, want) {
					t.Errorf("admin tools = %v, want %v", got, want)
				}
				rl, err := reader.ListResources(ctxT(t), nil)
				if err != nil {
					t.Fatal(err)
				}
				var uris []string
				for _, r := range rl.Resources {
					uris = append(uris, r.URI)
				}
				slices.Sort(uris)
				if want := []string{mcpexample.ResourceHandbook, mcpexample.ResourceDocA}; !slices.Equal(uris, want) {
					t.Errorf("reader resources = %v, want %v", uris, want)
				}
				if rl.CacheScope != "private" {
					t.Errorf("resources/list cacheScope = %q, want private", rl.CacheScope)
				}
				tl, err := reader.ListResourceTemplates(ctxT(t), nil)
				if err != nil || len(tl.ResourceTemplates) != 1 || tl.ResourceTemplates[0].URITemplate != mcpexample.TemplateDocs {
					t.Errorf("reader templates = %v, %v", tl, err)
				}
				pl, err := reader.ListPrompts(ctxT(t), nil)
				if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != mcpexample.PromptSummarize {
					t.Errorf("reader prompts = %v, %v", pl, err)
				}
			})

			t.Run("audit", func(t *testing.T) {
				recs := auditLines(t, e)
				var sawDeny, sawAllow bool
				for _, r := range recs {
					if r.Method == "tools/call" && r.Target == mcpexample.ToolDeleteRecord && r.Decision == "deny" && r.SPIFFEID == "spiffe://acme.test/client/alice" {
						sawDeny = true
					}
					if r.Method == "tools/call" && r.Target == mcpexample.ToolDeleteRecord && r.Decision == "allow" && slices.Equal(r.Policies, []string{"admins-everything"}) {
						sawAllow = true
					}
				}
				if !sawDeny || !sawAllow {
					t.Fatalf("audit log lacks the delete_record decisions:\n%s", e.audit.String())
				}
				if n, err := identity.VerifyLog(strings.NewReader(e.audit.String())); err != nil || n != len(recs) {
					t.Fatalf("VerifyLog = %d, %v", n, err)
				}
			})

			t.Run("hot reload", func(t *testing.T) {
				src, err := os.ReadFile(e.policyFile)
				if err != nil {
					t.Fatal(err)
				}
				grant := string(src) + "\n@id(\"readers-delete\")\npermit (principal in Mcp::Role::\"reader\", action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"delete_record\");\n"
				if err := os.WriteFile(e.policyFile, []byte(grant), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := e.authz.Reload(); err != nil {
					t.Fatal(err)
				}
				if out, err := call(t, reader, mcpexample.ToolDeleteRecord, map[string]any{"id": "7"}); err != nil || out != "record 7 deleted" {
					t.Fatalf("after reload, delete_record as reader: %q, %v", out, err)
				}
				if !slices.Contains(toolNames(t, reader), mcpexample.ToolDeleteRecord) {
					t.Fatal("after reload, the reader's tool list lacks delete_record")
				}
				if err := os.WriteFile(e.policyFile, src, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := e.authz.Reload(); err != nil {
					t.Fatal(err)
				}
				if _, err := call(t, reader, mcpexample.ToolDeleteRecord, map[string]any{"id": "7"}); err == nil {
					t.Fatal("after the second reload, delete_record as reader is still allowed")
				}
			})
		})
	}
}

// post sends one raw JSON-RPC request to the server.
func post(t testing.TB, hc *http.Client, url, session, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", stateful)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const listTools = `{"jsonrpc":"2.0","id":99,"method":"tools/list"}`

func TestSessionHijack(t *testing.T) {
	p := newPKI(t)
	e := startServer(t, p, envOptions{})
	alice, aliceHTTP := e.mustConnect(t, p.reader, stateful)
	if alice.ID() == "" {
		t.Fatal("no session ID in stateful mode")
	}
	// Alice herself can use her session, and the answer is private.
	resp, body := post(t, aliceHTTP, e.url, alice.ID(), listTools)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "search_docs") {
		t.Fatalf("alice on her session: %d %s", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private, no-store") {
		t.Errorf("Cache-Control = %q", cc)
	}
	// Bob presents Alice's session ID.
	bobHTTP := e.httpClient(p.admin)
	resp, body = post(t, bobHTTP, e.url, alice.ID(), listTools)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"error":"session belongs to another identity"`) {
		t.Fatalf("bob on alice's session: %d %s", resp.StatusCode, body)
	}
	// Nor can Bob end it.
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodDelete, e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Mcp-Session-Id", alice.ID())
	dresp, err := bobHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	dbody, _ := io.ReadAll(dresp.Body)
	dresp.Body.Close()
	if dresp.StatusCode != http.StatusForbidden || !strings.Contains(string(dbody), "session belongs to another identity") {
		t.Fatalf("bob deleting alice's session: %d %s", dresp.StatusCode, dbody)
	}
	// Alice's session still works.
	if _, err := call(t, alice, mcpexample.ToolSearchDocs, map[string]any{"query": "roles"}); err != nil {
		t.Fatal(err)
	}
}

func TestRevokedCertificate(t *testing.T) {
	p := newPKI(t)
	e := startServer(t, p, envOptions{})
	cs, hc := e.mustConnect(t, p.reader, "")
	if _, err := call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatal(err)
	}
	if err := p.ca.Client.RevokeSelf(ctxT(t), p.reader, "test"); err != nil {
		t.Fatal(err)
	}
	// Until the server's CRL refreshes, the reader still gets in.
	if _, err := call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatalf("before the CRL refresh: %v", err)
	}
	if err := e.crl.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The warm connection is refused with a clear body...
	resp, body := post(t, hc, e.url, "", listTools)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"error":"client certificate rejected"`) || !strings.Contains(body, "revoked") {
		t.Fatalf("revoked, warm connection: %d %s", resp.StatusCode, body)
	}
	// ...and a new connection fails at the handshake.
	_, _, err := e.connect(t, p.reader, "")
	if err == nil {
		t.Fatal("revoked certificate connected")
	}
	e.tlsLog.waitFor(t, "identity: spiffe://acme.test/client/alice: certificate (serial "+p.reader.Leaf.SerialNumber.Text(16)+") is revoked since")
	// Others are unaffected.
	admin, _ := e.mustConnect(t, p.admin, "")
	if _, err := call(t, admin, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestExpiredCertificate(t *testing.T) {
	p := newPKI(t)
	e := startServer(t, p, envOptions{})
	cs, hc := e.mustConnect(t, p.reader, "")
	if _, err := call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(p.reader.Leaf.NotAfter.Add(time.Minute))
	resp, body := post(t, hc, e.url, "", listTools)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "expired") {
		t.Fatalf("expired, warm connection: %d %s", resp.StatusCode, body)
	}
	if _, _, err := e.connect(t, p.reader, ""); err == nil {
		t.Fatal("expired certificate connected")
	}
	e.tlsLog.waitFor(t, "identity: spiffe://acme.test/client/alice: certificate expired")
}

func TestForeignCA(t *testing.T) {
	p := newPKI(t)
	e := startServer(t, p, envOptions{})
	other := testca.NewCA(t, "acme.test")
	mallory := other.CreateSVID("spiffe://acme.test/client/mallory")
	_, _, err := e.connect(t, mallory.TLS, "")
	if err == nil {
		t.Fatal("a certificate from another CA connected")
	}
	// With TLS 1.3 the client learns of the refusal after its side of the
	// handshake, as "bad certificate" or a failed HTTP/2 preface: the
	// reason is in the server's log.
	e.tlsLog.waitFor(t, "TLS handshake error")
	e.tlsLog.waitFor(t, "identity: spiffe://acme.test/client/mallory: chain does not verify: x509: certificate signed by unknown authority")
}

// The denial carries CodeDenied, which the go-sdk client does not mistake
// for a closed connection: the session stays usable.
func TestDeniedCode(t *testing.T) {
	p := newPKI(t)
	e := startServer(t, p, envOptions{})
	cs, _ := e.mustConnect(t, p.reader, "")
	_, err := call(t, cs, mcpexample.ToolDeleteRecord, nil)
	var jerr *jsonrpc.Error
	if !errors.As(err, &jerr) || jerr.Code != mcpauth.CodeDenied || jerr.Message != mcpauth.DeniedMessage {
		t.Fatalf("got %#v", err)
	}
	if errors.Is(err, mcp.ErrConnectionClosed) {
		t.Fatalf("the denial reads as a closed connection: %v", err)
	}
	if _, err := call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatal(err)
	}
}

// With WithToolArguments the policy sees the call's arguments.
func TestToolArguments(t *testing.T) {
	p := newPKI(t)
	src, err := os.ReadFile(starterPolicy)
	if err != nil {
		t.Fatal(err)
	}
	pol := string(src) + `
@id("never-delete-root")
forbid (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"delete_record")
when { context has args && context.args has id && context.args.id == "root" };
`
	e := startServer(t, p, envOptions{toolArgs: true, policy: pol})
	admin, _ := e.mustConnect(t, p.admin, "")
	if out, err := call(t, admin, mcpexample.ToolDeleteRecord, map[string]any{"id": "42"}); err != nil || out != "record 42 deleted" {
		t.Fatalf("delete 42: %q, %v", out, err)
	}
	if _, err := call(t, admin, mcpexample.ToolDeleteRecord, map[string]any{"id": "root"}); err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
		t.Fatalf("delete root: %v", err)
	}
	recs := auditLines(t, e)
	last := recs[len(recs)-1]
	if last.Decision != "deny" || !slices.Equal(last.Policies, []string{"never-delete-root"}) || last.Args["id"] != "root" {
		t.Fatalf("last audit record: %+v", last)
	}
}
