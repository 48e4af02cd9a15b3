package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/audit"
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
func auditLines(t testing.TB, e *env) []audit.Record {
	t.Helper()
	var recs []audit.Record
	for _, l := range strings.Split(strings.TrimSpace(e.audit.String()), "\n") {
		if l == "" {
			continue
		}
		var r audit.Record
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
			guest, _ := e.mustConnect(t, p.guest, mode.version)

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
				// Carol (no role) may not use summarize, which exists.
				_, errForbidden = guest.GetPrompt(ctxT(t), &mcp.GetPromptParams{Name: mcpexample.PromptSummarize, Arguments: map[string]string{"uri": "docs://handbook"}})
				_, errUnknown = guest.GetPrompt(ctxT(t), &mcp.GetPromptParams{Name: "nope"})
				sameDenial(t, "prompts/get summarize (forbidden) and nope (unknown)", errForbidden, errUnknown)
				_, errForbidden = guest.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceHandbook})
				_, errUnknown = guest.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: "docs://nope"})
				sameDenial(t, "resources/read handbook (forbidden) and docs://nope (unknown)", errForbidden, errUnknown)
				_, errForbidden = reader.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceSecrets})
				_, errUnknown = reader.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: "file:///secrets/nope.txt"})
				sameDenial(t, "resources/read secrets (forbidden) and file:///secrets/nope.txt (unknown)", errForbidden, errUnknown)
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
				tl, err := reader.ListResourceTemplates(ctxT(t), nil)
				if err != nil || len(tl.ResourceTemplates) != 1 || tl.ResourceTemplates[0].URITemplate != mcpexample.TemplateDocs {
					t.Fatalf("reader templates = %v, %v", tl, err)
				}
				pl, err := reader.ListPrompts(ctxT(t), nil)
				if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != mcpexample.PromptSummarize {
					t.Fatalf("reader prompts = %v, %v", pl, err)
				}
				tools, err := reader.ListTools(ctxT(t), nil)
				if err != nil {
					t.Fatal(err)
				}
				// Every filtered list is marked private to the caller.
				for name, c := range map[string]mcp.Cacheable{
					"tools/list": tools.Cacheable, "resources/list": rl.Cacheable,
					"resources/templates/list": tl.Cacheable, "prompts/list": pl.Cacheable,
				} {
					if c.CacheScope != "private" || c.TTLMs != 0 {
						t.Errorf("%s: cacheScope %q, ttlMs %d; want private, 0", name, c.CacheScope, c.TTLMs)
					}
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
				if n, err := audit.Verify(strings.NewReader(e.audit.String())); err != nil || n != len(recs) {
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

// sameDenial fails unless both errors are the adapter's denial, identical
// in code, message and data.
func sameDenial(t testing.TB, what string, a, b error) {
	t.Helper()
	var ja, jb *jsonrpc.Error
	if !errors.As(a, &ja) || !errors.As(b, &jb) {
		t.Fatalf("%s: not JSON-RPC errors: %v / %v", what, a, b)
	}
	if ja.Code != mcpauth.CodeDenied || ja.Message != mcpauth.DeniedMessage || ja.Code != jb.Code || ja.Message != jb.Message || string(ja.Data) != string(jb.Data) || a.Error() != b.Error() {
		t.Fatalf("%s answer differently or not as denials:\n%#v\n%#v", what, ja, jb)
	}
}

// denied fails unless err is the adapter's denial.
func denied(t testing.TB, what string, err error) {
	t.Helper()
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpauth.CodeDenied || je.Message != mcpauth.DeniedMessage || len(je.Data) != 0 {
		t.Fatalf("%s: got %v, want the denial %d %q", what, err, mcpauth.CodeDenied, mcpauth.DeniedMessage)
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

// completionPolicy adds to the starter policy completion of the summarize
// prompt and of the docs template for readers.
const completionPolicy = `
@id("readers-complete-summarize")
permit (principal in Mcp::Role::"reader", action == Mcp::Action::"completion/complete", resource == Mcp::Prompt::"summarize");

@id("readers-complete-docs")
permit (principal in Mcp::Role::"reader", action == Mcp::Action::"completion/complete", resource is Mcp::Resource)
when { resource.uri like "file:///docs/*" };
`

// completion/complete is decided by the prompt or resource it completes,
// and resources/subscribe by the URI, through the go-sdk client.
func TestCompletionAndSubscribe(t *testing.T) {
	p := newPKI(t)
	src, err := os.ReadFile(starterPolicy)
	if err != nil {
		t.Fatal(err)
	}
	e := startServer(t, p, envOptions{policy: string(src) + completionPolicy})
	reader, _ := e.mustConnect(t, p.reader, stateful)
	admin, _ := e.mustConnect(t, p.admin, stateful)
	complete := func(cs *mcp.ClientSession, ref *mcp.CompleteReference, arg, value string) ([]string, error) {
		res, err := cs.Complete(ctxT(t), &mcp.CompleteParams{Ref: ref, Argument: mcp.CompleteParamsArgument{Name: arg, Value: value}})
		if err != nil {
			return nil, err
		}
		return res.Completion.Values, nil
	}
	summarize := &mcp.CompleteReference{Type: "ref/prompt", Name: mcpexample.PromptSummarize}
	docsTemplate := &mcp.CompleteReference{Type: "ref/resource", URI: mcpexample.TemplateDocs}
	secretsTemplate := &mcp.CompleteReference{Type: "ref/resource", URI: "file:///secrets/{name}"}

	t.Run("completion allowed", func(t *testing.T) {
		if got, err := complete(reader, summarize, "uri", "docs"); err != nil || !slices.Equal(got, []string{mcpexample.ResourceHandbook}) {
			t.Fatalf("reader completes summarize: %v, %v", got, err)
		}
		if got, err := complete(reader, docsTemplate, "name", ""); err != nil || !slices.Equal(got, []string{"a.md"}) {
			t.Fatalf("reader completes the docs template: %v, %v", got, err)
		}
	})
	t.Run("completion denied", func(t *testing.T) {
		_, err := complete(reader, secretsTemplate, "name", "")
		denied(t, "reader completes the secrets template", err)
		_, errUnknown := complete(reader, &mcp.CompleteReference{Type: "ref/prompt", Name: "exfiltrate"}, "uri", "")
		denied(t, "reader completes an unknown prompt", errUnknown)
		sameDenial(t, "completion of the secrets template and of an unknown prompt", err, errUnknown)
		// Carol has no role: the prompt she may not use is not completed.
		guest, _ := e.mustConnect(t, p.guest, stateful)
		_, err = complete(guest, summarize, "uri", "")
		denied(t, "guest completes summarize", err)
	})
	t.Run("subscribe allowed", func(t *testing.T) {
		if err := reader.Subscribe(ctxT(t), &mcp.SubscribeParams{URI: mcpexample.ResourceHandbook}); err != nil {
			t.Fatalf("reader subscribes to the handbook: %v", err)
		}
		if err := reader.Unsubscribe(ctxT(t), &mcp.UnsubscribeParams{URI: mcpexample.ResourceHandbook}); err != nil {
			t.Fatalf("reader unsubscribes from the handbook: %v", err)
		}
	})
	t.Run("subscribe denied", func(t *testing.T) {
		err := reader.Subscribe(ctxT(t), &mcp.SubscribeParams{URI: mcpexample.ResourceSecrets})
		denied(t, "reader subscribes to the secrets", err)
		// The forbid beats the admin's permit-everything.
		denied(t, "admin subscribes to the secrets", admin.Subscribe(ctxT(t), &mcp.SubscribeParams{URI: mcpexample.ResourceSecrets}))
		errUnknown := reader.Subscribe(ctxT(t), &mcp.SubscribeParams{URI: "file:///secrets/nope.txt"})
		sameDenial(t, "subscribing to the secrets and to an unknown secret", err, errUnknown)
	})
	t.Run("audit", func(t *testing.T) {
		type key struct{ id, method, target, decision, policy string }
		seen := map[key]bool{}
		for _, r := range auditLines(t, e) {
			seen[key{r.SPIFFEID, r.Method, r.Target, r.Decision, strings.Join(r.Policies, ",")}] = true
		}
		const alice, bob = "spiffe://acme.test/client/alice", "spiffe://acme.test/client/bob"
		for _, k := range []key{
			{alice, "completion/complete", mcpexample.PromptSummarize, "allow", "readers-complete-summarize"},
			{alice, "completion/complete", mcpexample.TemplateDocs, "allow", "readers-complete-docs"},
			{alice, "completion/complete", "file:///secrets/{name}", "deny", ""},
			{alice, "resources/subscribe", mcpexample.ResourceHandbook, "allow", "readers-read-docs"},
			{alice, "resources/unsubscribe", mcpexample.ResourceHandbook, "allow", "readers-read-docs"},
			{alice, "resources/subscribe", mcpexample.ResourceSecrets, "deny", "no-secrets"},
			{bob, "resources/subscribe", mcpexample.ResourceSecrets, "deny", "no-secrets"},
		} {
			if !seen[k] {
				t.Errorf("no audit record %+v in:\n%s", k, e.audit.String())
			}
		}
	})
}

// rpcResult decodes the result of a JSON-RPC response sent as JSON or as
// one server-sent event.
func rpcResult(t testing.TB, body string) map[string]any {
	t.Helper()
	data := body
	for _, l := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			data = d
		}
	}
	var msg struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(data), &msg); err != nil || msg.Result == nil {
		t.Fatalf("not a JSON-RPC result: %v\n%s", err, body)
	}
	return msg.Result
}

// Every list is marked private twice: cacheScope in the result, and
// Cache-Control on the HTTP response.
func TestListsPrivate(t *testing.T) {
	p := newPKI(t)
	e := startServer(t, p, envOptions{})
	alice, hc := e.mustConnect(t, p.reader, stateful)
	for i, method := range []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"} {
		t.Run(method, func(t *testing.T) {
			resp, body := post(t, hc, e.url, alice.ID(), fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q}`, 100+i, method))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			want := "private, no-store"
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				want += ", no-transform"
			}
			if cc := resp.Header.Get("Cache-Control"); cc != want {
				t.Errorf("Cache-Control = %q, want %q", cc, want)
			}
			res := rpcResult(t, body)
			if res["cacheScope"] != "private" || res["ttlMs"] != 0.0 {
				t.Errorf("cacheScope %v, ttlMs %v; want private, 0:\n%s", res["cacheScope"], res["ttlMs"], body)
			}
		})
	}
}

// step advances the fake clock by d once the policy watch has armed its
// timer, and waits until the watch has polled and armed the next one.
func step(t testing.TB, fc *clock.Fake, d time.Duration) {
	t.Helper()
	for {
		ch := fc.Changed()
		if fc.Pending() > 0 {
			break
		}
		<-ch
	}
	changed := fc.Changed()
	fc.Advance(d)
	<-changed
}

// Editing the policy file changes a live session's decisions through
// Live.Watch, the mechanism cmd/mcpca-example runs; a broken edit
// keeps the last good policy.
func TestPolicyFileWatch(t *testing.T) {
	p := newPKI(t)
	e := startServer(t, p, envOptions{})
	reader, _ := e.mustConnect(t, p.reader, stateful)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.authz.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v", err)
		}
	})
	const poll = 2 * time.Second // policy.WithPollInterval's default
	src, err := os.ReadFile(e.policyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = call(t, reader, mcpexample.ToolDeleteRecord, map[string]any{"id": "7"})
	denied(t, "delete_record before the edit", err)

	grant := string(src) + "\n@id(\"readers-delete\")\npermit (principal in Mcp::Role::\"reader\", action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"delete_record\");\n"
	if err := os.WriteFile(e.policyFile, []byte(grant), 0o600); err != nil {
		t.Fatal(err)
	}
	step(t, e.clk, poll)
	if g := e.authz.Generation(); g != 2 {
		t.Fatalf("generation after the edit = %d, want 2\n%s", g, e.policyLog.String())
	}
	if out, err := call(t, reader, mcpexample.ToolDeleteRecord, map[string]any{"id": "7"}); err != nil || out != "record 7 deleted" {
		t.Fatalf("delete_record after the edit: %q, %v", out, err)
	}

	broken := grant + "\npermit (principal, action == Mcp::Action::\"tools/call\", resource"
	if err := os.WriteFile(e.policyFile, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	step(t, e.clk, poll)
	e.policyLog.waitFor(t, `level=ERROR msg="policy reload failed, keeping the last good policy set"`)
	if g := e.authz.Generation(); g != 2 {
		t.Fatalf("generation after the broken edit = %d, want 2", g)
	}
	if out, err := call(t, reader, mcpexample.ToolDeleteRecord, map[string]any{"id": "8"}); err != nil || out != "record 8 deleted" {
		t.Fatalf("delete_record after the broken edit (last good policy): %q, %v", out, err)
	}

	if err := os.WriteFile(e.policyFile, src, 0o600); err != nil {
		t.Fatal(err)
	}
	step(t, e.clk, poll)
	if g := e.authz.Generation(); g != 3 {
		t.Fatalf("generation after the revert = %d, want 3", g)
	}
	_, err = call(t, reader, mcpexample.ToolDeleteRecord, map[string]any{"id": "9"})
	denied(t, "delete_record after the revert", err)
}

// foreignBody is Handler's refusal of a session another identity created.
const foreignBody = `{"error":"session belongs to another identity","detail":"start a new session: an MCP session can only be used by the identity that created it"}` + "\n"

// deleteSession ends session sid over hc.
func deleteSession(t testing.TB, hc *http.Client, url, sid string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodDelete, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// A session whose binding left the table (expired, or evicted from a full
// table) is refused to everyone with the 404 of an unknown session, which
// tells a client to start a new one; the creator then does.
func TestSessionBindingGone(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name string
		opts []mcpauth.Option
		drop func(e *env) // makes the Guard drop alice's binding
	}{
		{"expired", []mcpauth.Option{mcpauth.WithSessionTTL(time.Minute)}, func(e *env) {
			e.clk.Advance(2 * time.Minute)
			e.mustConnect(t, p.guest, stateful) // a new binding sweeps the expired ones
		}},
		{"evicted", []mcpauth.Option{mcpauth.WithMaxSessions(1)}, func(e *env) {
			e.mustConnect(t, p.guest, stateful) // the table holds one binding
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startServer(t, p, envOptions{guardOpts: tc.opts})
			alice, aliceHTTP := e.mustConnect(t, p.reader, stateful)
			tc.drop(e)
			bobHTTP := e.httpClient(p.admin)
			for who, hc := range map[string]*http.Client{"bob": bobHTTP, "alice": aliceHTTP} {
				resp, body := post(t, hc, e.url, alice.ID(), listTools)
				if resp.StatusCode != http.StatusNotFound || body != "session not found\n" {
					t.Fatalf("%s on alice's unbound session: %d %q", who, resp.StatusCode, body)
				}
			}
			resp, body := deleteSession(t, bobHTTP, e.url, alice.ID())
			if resp.StatusCode != http.StatusNotFound || body != "session not found\n" {
				t.Fatalf("bob deleting alice's unbound session: %d %q", resp.StatusCode, body)
			}
			// Alice starts a new session, bound to her; bob cannot use it.
			alice2, _ := e.mustConnect(t, p.reader, stateful)
			if out, err := call(t, alice2, mcpexample.ToolWhoAmI, nil); err != nil || out != "spiffe://acme.test/client/alice roles=reader" {
				t.Fatalf("alice on her new session: %q, %v", out, err)
			}
			if resp, body := post(t, bobHTTP, e.url, alice2.ID(), listTools); resp.StatusCode != http.StatusForbidden || body != foreignBody {
				t.Fatalf("bob on alice's new session: %d %q", resp.StatusCode, body)
			}
			// A session that never existed: the same 404.
			resp, body = post(t, bobHTTP, e.url, "no-such-session", listTools)
			if resp.StatusCode != http.StatusNotFound || body != "session not found\n" {
				t.Fatalf("unknown session: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// failingWriter fails every write, as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// A request whose decision cannot be audited is refused (nothing happens
// that the log does not show), unless the Guard is told to fail open.
func TestAuditFailure(t *testing.T) {
	p := newPKI(t)
	for _, failOpen := range []bool{false, true} {
		logs := &syncBuf{}
		opts := []mcpauth.Option{mcpauth.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))}
		if failOpen {
			opts = append(opts, mcpauth.WithAuditFailOpen())
		}
		e := startServer(t, p, envOptions{auditLog: audit.New(failingWriter{}), guardOpts: opts})
		cs, _ := e.mustConnect(t, p.reader, "")
		_, err := call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "roles"})
		if failOpen {
			if err != nil {
				t.Fatalf("fail open: the allowed call failed: %v", err)
			}
			logs.waitFor(t, "serving the request (WithAuditFailOpen)")
		} else {
			var je *jsonrpc.Error
			if !errors.As(err, &je) || je.Code != mcpauth.CodeAuditFailed || je.Message != mcpauth.AuditFailedMessage {
				t.Fatalf("an allowed call that could not be audited: got %v, want %d %q", err, mcpauth.CodeAuditFailed, mcpauth.AuditFailedMessage)
			}
			logs.waitFor(t, "refusing the request")
			logs.waitFor(t, "no space left on device")
		}
		// A denied call stays a denial either way.
		_, err = call(t, cs, mcpexample.ToolDeleteRecord, map[string]any{"id": "1"})
		denied(t, "delete_record as reader with a failing audit log", err)
	}
}

// With batched audit lines, many clients calling at once: every decision
// reaches the file, in one intact chain, by the time the log is closed.
func TestBatchedAuditUnderConcurrentCalls(t *testing.T) {
	p := newPKI(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	auditLog, err := audit.Open(path, audit.WithFlushInterval(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	e := startServer(t, p, envOptions{auditLog: auditLog})
	const clients, calls = 8, 25
	var wg sync.WaitGroup
	for i := range clients {
		cert := p.reader
		if i%2 == 1 {
			cert = p.admin
		}
		cs, _ := e.mustConnect(t, cert, "")
		wg.Go(func() {
			for range calls {
				if _, err := call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "roles"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := auditLog.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := audit.Verify(bytes.NewReader(data))
	if err != nil || n != clients*calls {
		t.Fatalf("audit log: %d records, %v; want %d in an intact chain", n, err, clients*calls)
	}
	if got := strings.Count(string(data), `"spiffe_id":"spiffe://acme.test/client/bob"`); got != clients/2*calls {
		t.Fatalf("bob's records: %d, want %d", got, clients/2*calls)
	}
}
