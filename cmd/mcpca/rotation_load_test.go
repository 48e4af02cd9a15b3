package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpca/mcpca/internal/pemfile"
)

// rotationRounds is how many times TestCLIRotationUnderLoad rotates the
// intermediate and then the root: 1, or MCPCA_ROTATION_ROUNDS (make
// test-rotation-long).
func rotationRounds(t *testing.T) int {
	if v := os.Getenv("MCPCA_ROTATION_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MCPCA_ROTATION_ROUNDS=%q: want a positive number", v)
		}
		return n
	}
	return 1
}

// mustBuildExample builds cmd/mcpca-example (once) next to the mcpca binary.
func mustBuildExample(t *testing.T) string {
	t.Helper()
	bin, err := buildExample()
	if err != nil {
		t.Fatalf("building mcpca-example: %v\n%s", err, bin)
	}
	return bin
}

// issuerOfFile is the issuer's name of the first certificate in a PEM file
// ("" while it cannot be read).
func issuerOfFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	l, err := pemfile.ParseCertificates(b, pemfile.SkipOthers)
	if err != nil {
		return ""
	}
	return l[0].Issuer.CommonName
}

func rootsInFile(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	l, err := pemfile.ParseCertificates(b, pemfile.SkipOthers)
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range l {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// Rotation under load, with real processes: a `mcpca serve`, an MCP
// server (mcpca-example, checking the CA's CRL set) and a client whose
// certificates are renewed every few seconds by `mcpca agent`s, while
// clients keep calling a tool (a new TLS connection per call, with the
// files as they are on disk at that moment). The intermediate is rotated,
// then the root, then the old generations are retired: not one call may
// fail, and both peers end on the new chain with the new bundle only.
func TestCLIRotationUnderLoad(t *testing.T) {
	rounds := rotationRounds(t)
	example := mustBuildExample(t)
	c := startServedCA(t)
	w := c.dir
	policy, err := filepath.Abs("../../scripts/policies/mcp-example.cedar")
	if err != nil {
		t.Fatal(err)
	}
	// Five-minute certificates (the CA's least), backdated a minute:
	// renewing at 18% of their six-minute life renews every 1.6 to 5s.
	tok := func(args ...string) string {
		tk := strings.TrimSpace(ok(t, w, append([]string{"token", "--dir", "pki", "--ttl", "5m"}, args...)...).stdout)
		f := filepath.Join(w, args[0]+".token")
		if err := os.WriteFile(f, []byte(tk+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	srvTok := tok("srv", "--server", "--dns", "localhost", "--role", "mcp-server")
	cliTok := tok("cli", "--role", "reader")
	agentFor := func(name, token string) *agentProc {
		return startAgent(t, w, "--name", name, "--cert", name+"/cert.pem", "--key", name+"/key.pem", "--bundle", name+"/bundle.pem",
			"--ca-url", c.url, "--root", c.root, "--token-file", token, "--renew-at", "0.18")
	}
	srvAgent, cliAgent := agentFor("srv", srvTok), agentFor("cli", cliTok)
	srvAgent.waitFor(t, "agent: enrolled with the token file", "srv")
	cliAgent.waitFor(t, "agent: enrolled with the token file", "cli")
	// The agents' logs are drained so they never block.
	for _, p := range []*agentProc{srvAgent, cliAgent} {
		go func() {
			for range p.lines {
			}
		}()
	}

	// The MCP server, re-reading its certificate, bundle and CRL set every
	// 200ms.
	exLog := &syncBuf{mu: make(chanMutex, 1)}
	ex := exec.Command(example, "--listen", "127.0.0.1:0", "--cert", "srv/cert.pem", "--key", "srv/key.pem", "--root", "srv/bundle.pem",
		"--policy", policy, "--crl", c.url+"/1.0/crl", "--poll", "200ms", "--stateless")
	ex.Dir = w
	ex.Stderr = exLog
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ex.Process.Signal(os.Interrupt)
		_ = ex.Wait()
	})
	var mcpURL string
	waitFor(t, func() bool {
		for _, line := range strings.Split(exLog.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "serving" {
				mcpURL, _ = m["mcp"].(string)
				return mcpURL != ""
			}
		}
		return false
	}, func() string { return "mcpca-example did not serve: " + exLog.String() })

	// The clients.
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"roles"}}}`
	var calls, failures atomic.Int64
	var failMu sync.Mutex
	var failed []string
	var serverIssuer atomic.Value
	serverIssuer.Store("")
	call := func() error {
		// The certificate first, then the bundle: the agent writes the
		// bundle before the certificate, so this bundle is as new as it.
		certPEM, err := os.ReadFile(filepath.Join(w, "cli", "cert.pem"))
		if err != nil {
			return err
		}
		keyPEM, err := os.ReadFile(filepath.Join(w, "cli", "key.pem"))
		if err != nil {
			return err
		}
		bundlePEM, err := os.ReadFile(filepath.Join(w, "cli", "bundle.pem"))
		if err != nil {
			return err
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(bundlePEM) {
			return fmt.Errorf("cli/bundle.pem holds no certificate")
		}
		tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, mcpURL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"result"`)) {
			return fmt.Errorf("tools/call: %d %s", resp.StatusCode, b)
		}
		serverIssuer.Store(resp.TLS.PeerCertificates[0].Issuer.CommonName)
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if err := call(); err != nil {
					failures.Add(1)
					failMu.Lock()
					if len(failed) < 10 {
						failed = append(failed, time.Now().UTC().Format("15:04:05.000")+" "+err.Error())
					}
					failMu.Unlock()
				}
			}
		}()
	}
	stopClients := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopClients)

	// onChain waits until both peers' certificates are issued by issuer,
	// and the server presents it to the clients.
	onChain := func(issuer string) {
		t.Helper()
		waitForLong(t, func() bool {
			return issuerOfFile(filepath.Join(w, "srv", "cert.pem")) == issuer && issuerOfFile(filepath.Join(w, "cli", "cert.pem")) == issuer &&
				serverIssuer.Load().(string) == issuer
		}, func() string {
			return fmt.Sprintf("want %q: server files %q, client files %q, server presents %q; CA log: %s", issuer,
				issuerOfFile(filepath.Join(w, "srv", "cert.pem")), issuerOfFile(filepath.Join(w, "cli", "cert.pem")), serverIssuer.Load(), tail(c.stderr.String(), 3000))
		})
	}
	onChain("Test CA Intermediate CA")
	inter := 1
	rootName := "Test CA Root CA"
	for round := 1; round <= rounds; round++ {
		inter++
		// The intermediate: held 3s (the server fetches the CRL set every
		// 200ms), then issuing.
		ok(t, w, "rotate", "intermediate", "--dir", "pki", "--switch-after", "3s", "--force")
		onChain(fmt.Sprintf("Test CA Intermediate CA G%d", inter))
		// The root: trusted at once; its intermediate issues after 12s,
		// by when every agent (renewing every 5s at most, fetching the
		// bundle with each renewal) holds it.
		inter++
		ok(t, w, "rotate", "root", "--dir", "pki", "--switch-after", "12s", "--force")
		onChain(fmt.Sprintf("Test CA Intermediate CA G%d", inter))
		rootName = fmt.Sprintf("Test CA Root CA G%d", round+1)
		// Retire the old generations at once: the bundles shrink to the
		// new root, and the calls go on.
		ok(t, w, "rotate", "retire", "--dir", "pki", "--force")
		waitForLong(t, func() bool {
			s, cl := rootsInFile(filepath.Join(w, "srv", "bundle.pem")), rootsInFile(filepath.Join(w, "cli", "bundle.pem"))
			return len(s) == 1 && s[0] == rootName && len(cl) == 1 && cl[0] == rootName
		}, func() string {
			return fmt.Sprintf("bundles: server %v, client %v, want [%s]", rootsInFile(filepath.Join(w, "srv", "bundle.pem")), rootsInFile(filepath.Join(w, "cli", "bundle.pem")), rootName)
		})
		// A few calls more on the retired-down bundle.
		n := calls.Load()
		waitForLong(t, func() bool { return calls.Load() > n+20 }, func() string { return "the clients stopped calling" })
	}
	stopClients()
	t.Logf("%d calls over %d rotation rounds (intermediate, root, retire), %d failed", calls.Load(), rounds, failures.Load())
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed; first ones:\n%s\nserver log: %s", failures.Load(), calls.Load(), strings.Join(failed, "\n"), tail(exLog.String(), 3000))
	}
	if calls.Load() < 50 {
		t.Fatalf("only %d calls", calls.Load())
	}
}

// waitForLong is waitFor with the deadline a rotation needs (a switch
// delay plus a renewal period on a busy machine).
func waitForLong(t *testing.T, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met: %s", describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
