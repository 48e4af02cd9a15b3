package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

// serveAgain runs `mcpca serve` on the existing CA directory of s (same
// address) and waits until it answers; the process is stopped with SIGTERM
// when the test ends, or by the returned stop.
func serveAgain(t *testing.T, s *servedCA) (stop func()) {
	t.Helper()
	stderr := &syncBuf{mu: make(chanMutex, 1)}
	cmd := exec.Command(mcpcaBin, "serve", "--dir", "pki")
	cmd.Dir = s.dir
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("mcpca serve did not stop on SIGTERM: %s", stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	addr := strings.TrimPrefix(s.url, "https://")
	waitFor(t, func() bool {
		select {
		case <-exited:
			t.Fatalf("mcpca serve exited: %s", stderr.String())
		default:
		}
		if !strings.Contains(stderr.String(), `"event":"start"`) {
			return false
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, stderr.String)
	return stop
}

type crashJob struct {
	token string
	csr   *x509.CertificateRequest
}

// TestKillDuringIssuance kills the CA (SIGKILL) in the middle of a
// 16-client issuance load and restarts it: every certificate a client
// received is in the store and revocable by serial, every token that was
// accepted is refused on replay, and the store file is consistent.
func TestKillDuringIssuance(t *testing.T) {
	s := startServedCA(t)
	pki := filepath.Join(s.dir, "pki")
	pw, err := os.ReadFile(ca.Layout{Dir: pki}.PasswordFile())
	if err != nil {
		t.Fatal(err)
	}
	pw = []byte(strings.TrimRight(string(pw), "\r\n"))
	m, err := ca.NewMinter(pki, pw, "")
	if err != nil {
		t.Fatal(err)
	}
	const clients, total, killAfter = 16, 600, 150
	jobs := make([]crashJob, total)
	for i := range jobs {
		tok, err := m.Token(ca.TokenRequest{Kind: identity.KindClient, Name: fmt.Sprintf("crash-%d", i), TokenTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := caclient.CSRForToken(tok, key)
		if err != nil {
			t.Fatal(err)
		}
		jobs[i] = crashJob{tok, csr}
	}
	rootPEM, err := os.ReadFile(s.root)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	cl, err := caclient.New(s.url, roots)
	if err != nil {
		t.Fatal(err)
	}

	// The load: each client takes the next job until the CA goes away.
	var mu sync.Mutex
	issued := map[int]*x509.Certificate{} // job -> certificate received
	kill := make(chan struct{})
	var killOnce sync.Once
	next := 0
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= total {
					return
				}
				chain, err := cl.Sign(context.Background(), jobs[i].csr, jobs[i].token)
				if err != nil {
					var ae *caclient.APIError
					if errors.As(err, &ae) {
						t.Errorf("job %d refused by the CA: %v", i, err)
					}
					return // the CA is gone
				}
				mu.Lock()
				issued[i] = chain[0]
				n := len(issued)
				mu.Unlock()
				if n >= killAfter {
					killOnce.Do(func() { close(kill) })
				}
			}
		}()
	}
	<-kill
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	mu.Lock()
	received := len(issued)
	mu.Unlock()
	if received >= total {
		t.Fatalf("all %d certificates were issued before the kill landed: no load was interrupted", total)
	}
	t.Logf("%d certificates received before SIGKILL, %d jobs started", received, min(next, total))

	stop := serveAgain(t, s)
	// Every token that was accepted is refused on replay.
	for i := range issued {
		_, err := cl.Sign(context.Background(), jobs[i].csr, jobs[i].token)
		var ae *caclient.APIError
		if !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(ae.Message, "token already used") {
			t.Fatalf("replay of accepted token %d after the crash: %v, want 401 token already used", i, err)
		}
	}
	// Every received certificate is revocable by serial.
	for i, c := range issued {
		serial := c.SerialNumber.String()
		tok, err := ca.MintRevokeToken(pki, pw, "", serial)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Revoke(context.Background(), serial, tok, "crash test"); err != nil {
			t.Fatalf("revoking certificate %s of job %d: %v", serial, i, err)
		}
	}
	der, err := cl.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != len(issued) {
		t.Fatalf("the CRL lists %d serials, want the %d revoked", len(crl.RevokedCertificateEntries), len(issued))
	}
	// The CA still issues.
	fresh, err := m.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "after-crash", TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := caclient.CSRForToken(fresh, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Sign(context.Background(), csr, fresh); err != nil {
		t.Fatalf("issuing after the restart: %v", err)
	}
	stop()

	// The store opens cleanly and holds every received certificate, revoked.
	st, err := store.Open(ca.Layout{Dir: pki}.Store())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Shutdown()
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	for i, c := range issued {
		got, err := st.GetCertificate(c.SerialNumber.String())
		if err != nil || !got.Equal(c) {
			t.Fatalf("certificate of job %d in the store: %v", i, err)
		}
		if ok, err := st.IsRevoked(c.SerialNumber.String()); err != nil || !ok {
			t.Fatalf("certificate of job %d revoked in the store: %v, %v", i, ok, err)
		}
		if fresh, err := st.UseToken(tokenID(t, jobs[i].token), jobs[i].token); err != nil || fresh {
			t.Fatalf("token of job %d in the store: fresh %v, %v", i, fresh, err)
		}
	}
}

// tokenID is the key step-ca's JWK provisioner records a used token under:
// its "jti", or the SHA-256 of the token when it has none.
func tokenID(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		ID string `json:"jti"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.ID == "" {
		sum := sha256.Sum256([]byte(tok))
		return hex.EncodeToString(sum[:])
	}
	return claims.ID
}
