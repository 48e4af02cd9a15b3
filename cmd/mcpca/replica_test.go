package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/mcpca/mcpca/internal/pgtest"
)

// replica is one `mcpca serve` process of a replicated CA.
type replica struct {
	dir, addr string
	args      []string
	cmd       *exec.Cmd
	stderr    *syncBuf
	exited    chan struct{}
	client    *caclient.Client
}

// replicatedCA is a CA made once (its directory copied per replica) whose
// replicas share one PostgreSQL database.
type replicatedCA struct {
	work, public string // test directory; the public address in the CA directory
	dsn, dsnFile string
	pw           []byte
	roots        *x509.CertPool
	minter       *ca.Minter
}

// newReplicatedCA inits a CA whose public address nobody listens on (the
// load balancer's), and copies its directory n times: pki1, pki2, ...
func newReplicatedCA(t *testing.T, n int) *replicatedCA {
	t.Helper()
	dsn := pgtest.DSN(t)
	work := t.TempDir()
	r := &replicatedCA{work: work, public: freeAddr(t), dsn: dsn, dsnFile: filepath.Join(work, "database-url")}
	ok(t, work, "init", "--dir", "pki1", "--name", "Replicated CA", "--trust-domain", "acme.test", "--address", r.public, "--dns", "localhost")
	for i := 2; i <= n; i++ {
		if out, err := exec.Command("cp", "-a", filepath.Join(work, "pki1"), filepath.Join(work, fmt.Sprintf("pki%d", i))).CombinedOutput(); err != nil {
			t.Fatalf("copying the CA directory: %v %s", err, out)
		}
	}
	if err := os.WriteFile(r.dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(work, "pki1")
	pw, err := os.ReadFile(ca.Layout{Dir: pki}.PasswordFile())
	if err != nil {
		t.Fatal(err)
	}
	r.pw = []byte(strings.TrimRight(string(pw), "\r\n"))
	if r.minter, err = ca.NewMinter(pki, r.pw, ""); err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(pki, "certs", "root_ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	r.roots = x509.NewCertPool()
	r.roots.AppendCertsFromPEM(rootPEM)
	return r
}

// start starts replica i (directory pki<i>) on its own address, without
// waiting for it; the first replica reads the URL from a file, the others
// from the flag.
func (r *replicatedCA) start(t *testing.T, i int, extra ...string) *replica {
	t.Helper()
	rp := &replica{dir: fmt.Sprintf("pki%d", i), addr: freeAddr(t), stderr: &syncBuf{mu: make(chanMutex, 1)}}
	db := []string{"--database", r.dsn}
	if i == 1 {
		db = []string{"--database-file", r.dsnFile}
	}
	rp.args = append(append([]string{"serve", "--dir", rp.dir, "--address", rp.addr}, db...), extra...)
	rp.launch(t, r.work)
	var err error
	if rp.client, err = caclient.New("https://"+rp.addr, r.roots); err != nil {
		t.Fatal(err)
	}
	return rp
}

func (rp *replica) launch(t *testing.T, work string) {
	t.Helper()
	rp.cmd = exec.Command(mcpcaBin, rp.args...)
	rp.cmd.Dir = work
	rp.cmd.Stderr = rp.stderr
	if err := rp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rp.exited = make(chan struct{})
	exited := rp.exited
	cmd := rp.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
}

// ready waits until the replica listens.
func (rp *replica) ready(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if strings.Contains(rp.stderr.String(), `"event":"start"`) {
			if c, err := net.Dial("tcp", rp.addr); err == nil {
				c.Close()
				return
			}
		}
		select {
		case <-rp.exited:
			t.Fatalf("replica %s exited: %s", rp.dir, rp.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready: %s", rp.dir, rp.stderr.String())
		}
	}
}

// health GETs /health at the replica.
func (rp *replica) health(t *testing.T) (int, ca.HealthResponse) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // only the status is read
	resp, err := c.Get("https://" + rp.addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h ca.HealthResponse
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("/health answered %q", b)
	}
	return resp.StatusCode, h
}

type enrolment struct {
	token string
	key   *ecdsa.PrivateKey
	csr   *x509.CertificateRequest
}

func (r *replicatedCA) enrolment(t *testing.T, m *ca.Minter, name string) enrolment {
	t.Helper()
	tok, err := m.Token(ca.TokenRequest{Kind: identity.KindClient, Name: name, TokenTTL: time.Hour})
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
	return enrolment{tok, key, csr}
}

// TestReplicas runs two `mcpca serve` processes, each on its own copy of
// the CA directory and its own address, on one PostgreSQL database,
// started at once on the empty database: tokens name the public address
// and are good at either; a token redeemed at both at once yields one
// certificate; a revocation at one is refused by the other's renew and is
// in both CRLs; a provisioner added at one reaches the other.
func TestReplicas(t *testing.T) {
	r := newReplicatedCA(t, 2)
	a, b := r.start(t, 1), r.start(t, 2) // at once, on an empty database
	a.ready(t)
	b.ready(t)
	ctx := context.Background()
	for _, rp := range []*replica{a, b} {
		if code, h := rp.health(t); code != http.StatusOK || h.Database != "postgresql" || h.Status != "ok" {
			t.Fatalf("/health of %s: %d %+v", rp.dir, code, h)
		}
	}
	if out := ok(t, r.work, "store", "check", "--database-file", r.dsnFile).stdout; !strings.Contains(out, "consistent (schema version") {
		t.Fatalf("store check: %s", out)
	}

	// Each token redeemed at both replicas at the same moment.
	const races = 12
	var wg sync.WaitGroup
	type outcome struct {
		chain []*x509.Certificate
		err   error
	}
	results := make([][2]outcome, races)
	for i := range races {
		e := r.enrolment(t, r.minter, fmt.Sprintf("race-%d", i))
		for j, rp := range []*replica{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				chain, err := rp.client.Sign(ctx, e.csr, e.token)
				results[i][j] = outcome{chain, err}
			}()
		}
	}
	wg.Wait()
	for i, res := range results {
		won := 0
		for _, o := range res {
			var ae *caclient.APIError
			switch {
			case o.err == nil:
				won++
			case errors.As(o.err, &ae) && ae.Status == http.StatusUnauthorized && strings.Contains(ae.Message, "token already used"):
			default:
				t.Fatalf("token %d: unexpected answer %v", i, o.err)
			}
		}
		if won != 1 {
			t.Fatalf("token %d redeemed at both replicas at once gave %d certificates, want 1", i, won)
		}
	}

	// A revocation at a is refused at b's renew and is in both CRLs.
	e := r.enrolment(t, r.minter, "revoked-at-a")
	chain, err := b.client.Sign(ctx, e.csr, e.token)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: e.key, Leaf: leaf}
	serial := leaf.SerialNumber.String()
	tok, err := ca.MintRevokeToken(filepath.Join(r.work, "pki1"), r.pw, "", serial)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.client.Revoke(ctx, serial, tok, "replica test"); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.Renew(ctx, cert)
	var ae *caclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(ae.Message, "certificate has been revoked") {
		t.Fatalf("renewal at b of the certificate revoked at a: %v", err)
	}
	var numbers []int64
	for _, rp := range []*replica{a, b} {
		der, err := rp.client.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, en := range crl.RevokedCertificateEntries {
			found = found || en.SerialNumber.Cmp(leaf.SerialNumber) == 0
		}
		if !found {
			t.Fatalf("the CRL of %s (number %v) does not list serial %s revoked at a", rp.dir, crl.Number, serial)
		}
		numbers = append(numbers, crl.Number.Int64())
	}
	if numbers[0] != numbers[1] {
		t.Fatalf("the replicas serve CRLs %d and %d: one CRL, one number sequence", numbers[0], numbers[1])
	}

	// Revocations at both replicas at once: every serial is in both CRLs,
	// which are one CRL (the replica that lost the race for a CRL number
	// generated again, above it).
	var revoked []*x509.Certificate
	for i := range 8 {
		e := r.enrolment(t, r.minter, fmt.Sprintf("revoked-both-%d", i))
		chain, err := a.client.Sign(ctx, e.csr, e.token)
		if err != nil {
			t.Fatal(err)
		}
		revoked = append(revoked, chain[0])
	}
	for i, c := range revoked {
		serial := c.SerialNumber.String()
		tok, err := ca.MintRevokeToken(filepath.Join(r.work, "pki1"), r.pw, "", serial)
		if err != nil {
			t.Fatal(err)
		}
		rp := []*replica{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rp.client.Revoke(ctx, serial, tok, "both at once"); err != nil {
				t.Errorf("revoking %s at %s: %v", serial, rp.dir, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	numbers = numbers[:0]
	for _, rp := range []*replica{a, b} {
		der, err := rp.client.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, en := range crl.RevokedCertificateEntries {
			listed[en.SerialNumber.String()] = true
		}
		for _, c := range revoked {
			if !listed[c.SerialNumber.String()] {
				t.Fatalf("the CRL of %s (number %v) does not list %s, revoked at one of the replicas", rp.dir, crl.Number, c.SerialNumber)
			}
		}
		numbers = append(numbers, crl.Number.Int64())
	}
	if numbers[0] != numbers[1] {
		t.Fatalf("after concurrent revocations the replicas serve CRLs %d and %d", numbers[0], numbers[1])
	}

	// A provisioner added at a's directory reaches b without a restart.
	from := len(b.stderr.String())
	add := ok(t, r.work, "provisioner", "add", "team-a", "--dir", "pki1", "--allow-role", "reader", "--allow-name", "client/team-a-*")
	if !strings.Contains(add.stderr, "Asked the running CA") {
		t.Fatalf("provisioner add did not signal replica a: %s", add.stderr)
	}
	waitFor(t, func() bool {
		logs := b.stderr.String()[from:]
		return strings.Contains(logs, `"shared configuration applied"`) && strings.Contains(logs, `"by":"shared configuration"`)
	}, func() string { return "replica b never applied the new provisioner: " + b.stderr.String()[from:] })
	if s, err := ca.LoadSettings(filepath.Join(r.work, "pki2")); err != nil || s.Provisioners["team-a"] == nil {
		t.Fatalf("pki2's mcpca.json after the shared configuration: %v", err)
	}
	team, err := ca.NewMinter(filepath.Join(r.work, "pki1"), r.pw, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	te := r.enrolment(t, team, "team-a-reporter")
	if _, err := b.client.Sign(ctx, te.csr, te.token); err != nil {
		t.Fatalf("replica b refuses a token of the provisioner added at a: %v", err)
	}
	out := ok(t, r.work, "store", "migrate", "--database", r.dsn)
	if !strings.Contains(out.stderr, "nothing to migrate") {
		t.Fatalf("store migrate on a migrated database: %s", out.stderr)
	}
}

// TestReplicaKilledUnderLoad kills one of two replicas (SIGKILL) in the
// middle of a 16-client issuance load spread over both: every certificate
// a client received is in the database and revocable at the other
// replica, and every accepted token is refused there on replay.
func TestReplicaKilledUnderLoad(t *testing.T) {
	r := newReplicatedCA(t, 2)
	a, b := r.start(t, 1), r.start(t, 2)
	a.ready(t)
	b.ready(t)
	const clients, total, killAfter = 16, 160, 40
	jobs := make([]enrolment, total)
	for i := range jobs {
		jobs[i] = r.enrolment(t, r.minter, fmt.Sprintf("load-%d", i))
	}
	var mu sync.Mutex
	issued := map[int]*x509.Certificate{}
	kill := make(chan struct{})
	var killOnce sync.Once
	next := 0
	var wg sync.WaitGroup
	for c := range clients {
		rp := []*replica{a, b}[c%2]
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
				chain, err := rp.client.Sign(context.Background(), jobs[i].csr, jobs[i].token)
				if err != nil {
					var ae *caclient.APIError
					if errors.As(err, &ae) {
						t.Errorf("job %d refused by %s: %v", i, rp.dir, err)
					}
					if rp == a {
						return // replica a is gone
					}
					continue
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
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d certificates received, replica a killed during the load", len(issued))
	ctx := context.Background()
	for i := range issued {
		_, err := b.client.Sign(ctx, jobs[i].csr, jobs[i].token)
		var ae *caclient.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(ae.Message, "token already used") {
			t.Fatalf("replay at b of accepted token %d: %v, want 401 token already used", i, err)
		}
	}
	st, err := store.OpenPostgres(ctx, r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Shutdown()
	for i, c := range issued {
		serial := c.SerialNumber.String()
		if got, err := st.GetCertificate(serial); err != nil || !got.Equal(c) {
			t.Fatalf("certificate %s of job %d not in the database: %v", serial, i, err)
		}
		tok, err := ca.MintRevokeToken(filepath.Join(r.work, "pki1"), r.pw, "", serial)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.client.Revoke(ctx, serial, tok, "kill test"); err != nil {
			t.Fatalf("revoking at b the certificate %s of job %d: %v", serial, i, err)
		}
		if ok, err := st.IsRevoked(serial); err != nil || !ok {
			t.Fatalf("certificate %s of job %d not revoked in the database: %v %v", serial, i, ok, err)
		}
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaPostgresRestart restarts PostgreSQL in the middle of a
// 4-client issuance load: meanwhile the replica answers 503 (health and
// issuance) with a message, every certificate it acknowledged is in the
// database, and it recovers without a restart.
func TestReplicaPostgresRestart(t *testing.T) {
	r := newReplicatedCA(t, 1)
	a := r.start(t, 1)
	a.ready(t)
	ctx := context.Background()
	var mu sync.Mutex
	var issued []*x509.Certificate
	unavailable := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const want503 = "the CA's database is unreachable; nothing was issued or revoked: try again shortly"
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := r.enrolment(t, r.minter, fmt.Sprintf("load-%d-%d", w, i))
				chain, err := a.client.Sign(ctx, e.csr, e.token)
				var ae *caclient.APIError
				mu.Lock()
				switch {
				case err == nil:
					issued = append(issued, chain[0])
				case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable && ae.Message == "ca: "+want503:
					unavailable++
				default:
					t.Errorf("issuance during the PostgreSQL restart: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(issued), unavailable
	}
	waitFor(t, func() bool { n, _ := count(); return n >= 20 }, func() string { return "no issuance before the restart" })
	cl := pgtest.Get(t)
	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = cl.Start()
		}
	})
	if code, h := a.health(t); code != http.StatusServiceUnavailable || !strings.Contains(h.Message, "the CA's database is unreachable") {
		t.Fatalf("/health while PostgreSQL is down: %d %+v", code, h)
	}
	waitFor(t, func() bool { _, u := count(); return u >= 4 }, func() string { return "no 503 while PostgreSQL is down" })
	_, err := a.client.CRL(ctx)
	var ae *caclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Message != "ca: "+want503 {
		t.Fatalf("GET /crl while PostgreSQL is down: %v", err)
	}
	before, _ := count()
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitFor(t, func() bool { n, _ := count(); return n >= before+20 }, func() string { return "no issuance after PostgreSQL came back" })
	close(stop)
	wg.Wait()
	if code, h := a.health(t); code != http.StatusOK {
		t.Fatalf("/health after PostgreSQL came back: %d %+v", code, h)
	}
	n, u := count()
	t.Logf("%d certificates issued, %d answers 503 while PostgreSQL was down", n, u)
	st, err := store.OpenPostgres(ctx, r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Shutdown()
	for _, c := range issued {
		if got, err := st.GetCertificate(c.SerialNumber.String()); err != nil || !got.Equal(c) {
			t.Fatalf("acknowledged certificate %s not in the database: %v", c.SerialNumber, err)
		}
	}
}
