package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smallstep/certificates/api"

	"github.com/mcpca/mcpca/ca/store"
)

func TestDurableWriter(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	// A claim is durable before the answer.
	if fresh, err := (claimingStore{st}).UseToken("t", ""); err != nil || !fresh {
		t.Fatalf("UseToken = %v, %v", fresh, err)
	}
	rec := httptest.NewRecorder()
	dw := &durableWriter{ResponseWriter: rec, st: st, logger: logger}
	writeJSON(dw, http.StatusCreated, map[string]string{"ok": "yes"})
	if rec.Code != http.StatusCreated || !dw.synced {
		t.Fatalf("answer %d, synced %v", rec.Code, dw.synced)
	}
	if fresh, err := st.UseToken("t", ""); err != nil || fresh {
		t.Fatalf("the claimed token after the answer: %v, %v", fresh, err)
	}

	// markDurable skips the Sync on a healthy store.
	rec = httptest.NewRecorder()
	dw = &durableWriter{ResponseWriter: rec, st: st, logger: logger}
	markDurable(dw)
	if !dw.synced {
		t.Fatal("markDurable did not mark a healthy store's writer")
	}

	// A store that cannot sync withholds the answer.
	if err := st.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	dw = &durableWriter{ResponseWriter: rec, st: st, logger: logger}
	dw.WriteHeader(http.StatusCreated)
	if _, err := dw.Write([]byte("certificate")); err == nil || err.Error() != "ca: response withheld: the store could not commit" {
		t.Fatalf("Write after a failed sync: %v", err)
	}
	dw.Flush()
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "certificate") ||
		!strings.Contains(rec.Body.String(), `"message":"ca: internal error; see the CA log"`) {
		t.Fatalf("answer %d %q", rec.Code, rec.Body.String())
	}
	if !strings.Contains(logs.String(), `"msg":"store sync failed: request not acknowledged","event":"store","error":"store: closed"`) {
		t.Fatalf("log: %s", logs.String())
	}
	if dw.Unwrap() != rec {
		t.Fatal("Unwrap")
	}
}

// writeSignResponse writes the bytes step-ca's api.SignResponse encodes to.
func TestSignResponseMatchesStepCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	pw := []byte("test-password")
	if _, err := Init(InitConfig{Dir: dir, Name: "Resp CA", TrustDomain: "acme.test", Address: "127.0.0.1:9443", Password: pw}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, pw, WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	st := s.state.Load()
	inter := st.auth.GetIntermediateCertificates()
	leaf := st.auth.GetRootCertificates()[0] // any certificate will do as the leaf
	for _, chain := range [][]*x509.Certificate{append([]*x509.Certificate{leaf}, inter...), {leaf}} {
		pems := make([]api.Certificate, len(chain))
		for i, c := range chain {
			pems[i] = api.Certificate{Certificate: c}
		}
		want := &api.SignResponse{ServerPEM: pems[0], CertChainPEM: pems, TLSOptions: st.auth.GetTLSOptions()}
		if len(pems) > 1 {
			want.CaPEM = pems[1]
		}
		var wantBuf bytes.Buffer
		if err := json.NewEncoder(&wantBuf).Encode(want); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		writeSignResponse(rec, chain, st)
		if rec.Body.String() != wantBuf.String() || rec.Code != http.StatusCreated || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("chain of %d: got %d %q\nwant %q", len(chain), rec.Code, rec.Body.String(), wantBuf.String())
		}
	}
}
