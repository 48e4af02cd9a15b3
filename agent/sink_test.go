package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func sinkIn(dir string) *FileSink {
	return &FileSink{
		CertFile:     filepath.Join(dir, "cert.pem"),
		KeyFile:      filepath.Join(dir, "key.pem"),
		BundleFile:   filepath.Join(dir, "b", "bundle.pem"),
		CombinedFile: filepath.Join(dir, "combined.pem"),
	}
}

func TestFileSinkWritesChainKeyBundleAndCombined(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	sink := sinkIn(dir)
	snap := newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), ca.Roots())
	if err := sink.Store(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{sink.CertFile: 0o644, sink.KeyFile: 0o600, sink.BundleFile: 0o644, sink.CombinedFile: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	got, err := LoadKeyPair(sink.CertFile, sink.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Certificate) != 2 || !bytes.Equal(got.Certificate[0], snap.Certificate.Certificate[0]) {
		t.Fatalf("chain on disk has %d certificates", len(got.Certificate))
	}
	combined, _ := os.ReadFile(sink.CombinedFile)
	if _, err := tls.X509KeyPair(combined, combined); err != nil {
		t.Fatalf("combined file: %v", err)
	}
	roots, err := LoadCertificates(sink.BundleFile)
	if err != nil || len(roots) != 1 || !roots[0].Equal(ca.Roots()[0]) {
		t.Fatalf("bundle: %v", err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestFileSinkDoesNotRewriteAnUnchangedKey(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	sink := &FileSink{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	first := ca.Cert("web", t0, t0.Add(time.Hour))
	if err := sink.Store(context.Background(), newSnapshot(first, nil)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(sink.KeyFile)
	renewed, _ := renewerOf(ca, func() time.Time { return t0 }, time.Hour).Renew(context.Background(), first)
	if err := sink.Store(context.Background(), newSnapshot(renewed, nil)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(sink.KeyFile)
	if !os.SameFile(before, after) {
		t.Fatal("the unchanged key file was replaced")
	}
	got, err := LoadKeyPair(sink.CertFile, sink.KeyFile)
	if err != nil || got.Leaf.SerialNumber.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Fatalf("renewed certificate not on disk: %v", err)
	}
}

// A path component that is a regular file makes the write fail for every
// user, root included (permission bits would not stop root).
func TestFileSinkFailedWriteLeavesPreviousFilesIntact(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	sink := sinkIn(dir)
	first := newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), ca.Roots())
	if err := sink.Store(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, sink.CertFile, sink.KeyFile, sink.CombinedFile)
	if err := os.RemoveAll(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	ca.Rotate()
	second := newSnapshot(ca.Cert("web", t0, t0.Add(2*time.Hour)), ca.Roots()) // a new key too
	err := sink.Store(context.Background(), second)
	want := "agent: writing " + sink.BundleFile + ": not a directory"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if after := readAll(t, sink.CertFile, sink.KeyFile, sink.CombinedFile); !bytes.Equal(before, after) {
		t.Fatal("a failed write changed the previous files")
	}
	got, err := LoadKeyPair(sink.CertFile, sink.KeyFile)
	if err != nil || got.Leaf.SerialNumber.Cmp(first.Leaf().SerialNumber) != 0 {
		t.Fatalf("previous pair no longer loads: %v", err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestFileSinkReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; TestFileSinkFailedWriteLeavesPreviousFilesIntact covers root")
	}
	ca := newTestCA(t)
	dir := t.TempDir()
	sink := &FileSink{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := sink.Store(context.Background(), newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), nil)); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, sink.CertFile, sink.KeyFile)
	os.Chmod(dir, 0o500)
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	err := sink.Store(context.Background(), newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), nil))
	if err == nil || err.Error() != "agent: writing "+sink.KeyFile+": permission denied" {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(before, readAll(t, sink.CertFile, sink.KeyFile)) {
		t.Fatal("a failed write changed the previous files")
	}
}

// Readers that read the certificate and then the key, as
// tls.LoadX509KeyPair does, must never see a certificate newer than the key,
// even while every renewal changes the key; the combined file always holds a
// matching pair.
func TestFileSinkReadersNeverPairNewCertificateWithOldKey(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	sink := &FileSink{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"), CombinedFile: filepath.Join(dir, "both.pem")}
	const rotations = 60
	snaps := make([]*Snapshot, rotations)
	index := map[string]int{} // leaf serial or public key DER -> rotation
	for i := range snaps {
		snaps[i] = newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), nil)
		index[snaps[i].Leaf().SerialNumber.String()] = i
		pub, _ := x509.MarshalPKIXPublicKey(snaps[i].Key().Public())
		index[string(pub)] = i
	}
	if err := sink.Store(context.Background(), snaps[0]); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() || reads.Load() < 10 {
				reads.Add(1)
				certPEM, err1 := os.ReadFile(sink.CertFile)
				keyPEM, err2 := os.ReadFile(sink.KeyFile)
				both, err3 := os.ReadFile(sink.CombinedFile)
				if err1 != nil || err2 != nil || err3 != nil {
					errs <- "read failed"
					return
				}
				if _, err := tls.X509KeyPair(both, both); err != nil {
					errs <- "combined file: " + err.Error()
					return
				}
				certIdx, keyIdx := indexOf(t, index, certPEM, keyPEM)
				if certIdx > keyIdx {
					errs <- "read certificate " + strconv.Itoa(certIdx) + " with key " + strconv.Itoa(keyIdx)
					return
				}
			}
		}()
	}
	for i := 1; i < rotations; i++ {
		if err := sink.Store(context.Background(), snaps[i]); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func indexOf(t *testing.T, index map[string]int, certPEM, keyPEM []byte) (int, int) {
	chain, err := parseChainPEM(certPEM)
	if err != nil {
		t.Error(err)
		return 0, 0
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		t.Error(err)
		return 0, 0
	}
	pub, _ := x509.MarshalPKIXPublicKey(key.Public())
	return index[chain[0].SerialNumber.String()], index[string(pub)]
}

func parseChainPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out, nil
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, cert)
	}
}

func TestFileSinkAndLoadErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	snap := newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), nil)
	if err := (&FileSink{CertFile: "x"}).Store(context.Background(), snap); err == nil || err.Error() != "agent: file sink needs both a certificate and a key file" {
		t.Fatalf("err = %v", err)
	}
	missing := filepath.Join(dir, "missing.pem")
	if _, err := LoadKeyPair(missing, missing); err == nil || err.Error() != "agent: reading certificate: open "+missing+": no such file or directory" {
		t.Fatalf("err = %v", err)
	}
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, chainPEM(snap.Certificate), 0o644)
	if _, err := LoadKeyPair(cert, missing); err == nil || err.Error() != "agent: reading key: open "+missing+": no such file or directory" {
		t.Fatalf("err = %v", err)
	}
	if _, err := LoadKeyPair(cert, cert); err == nil || !strings.HasPrefix(err.Error(), "agent: loading "+cert+" and "+cert+": tls: ") {
		t.Fatalf("err = %v", err)
	}
	if _, err := LoadCertificates(missing); err == nil || err.Error() != "agent: reading certificates: open "+missing+": no such file or directory" {
		t.Fatalf("err = %v", err)
	}
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("hello"), 0o644)
	if _, err := LoadCertificates(junk); err == nil || err.Error() != "agent: "+junk+" holds no certificate" {
		t.Fatalf("err = %v", err)
	}
	if _, err := parseKey([]byte("nothing")); err == nil || err.Error() != "agent: no private key found" {
		t.Fatalf("err = %v", err)
	}
}

func readAll(t *testing.T, paths ...string) []byte {
	t.Helper()
	var out []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(filepath.Base(path), ".tmp-") {
			left = append(left, path)
		}
		return nil
	})
	return left
}

// FuzzParseKey: key files are read from disk; any bytes either give a key or
// an "agent: " error, never a panic.
func FuzzParseKey(f *testing.F) {
	ca := newTestCA(f)
	k, _ := encodeKey(ca.Cert("web", t0, t0.Add(time.Hour)).PrivateKey)
	f.Add(k)
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, err := parseKey(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "agent: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if key.Public() == nil {
			t.Fatal("key without public key")
		}
	})
}

func TestFileSinkKeepsTheBundleWhenTheSnapshotHasNone(t *testing.T) {
	ca := newTestCA(t)
	sink := sinkIn(t.TempDir())
	if err := sink.Store(context.Background(), newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), ca.Roots())); err != nil {
		t.Fatal(err)
	}
	if err := sink.Store(context.Background(), newSnapshot(ca.Cert("web", t0, t0.Add(time.Hour)), nil)); err != nil {
		t.Fatal(err)
	}
	if roots, err := LoadCertificates(sink.BundleFile); err != nil || len(roots) != 1 {
		t.Fatalf("bundle: %v", err)
	}
}
