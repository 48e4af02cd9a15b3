package ca

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParseRotation: whatever config/rotation.json holds (it also arrives
// from the shared configuration of replicas), parsing it never panics, and
// an accepted file holds a root and an intermediate, each intermediate
// signed by a held root, and names one issuing intermediate.
func FuzzParseRotation(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "pki")
	pw := []byte("fuzz-password-1234")
	if _, err := Init(InitConfig{Dir: dir, Name: "Fuzz", TrustDomain: "acme.test", Address: "127.0.0.1:1", Password: pw}); err != nil {
		f.Fatal(err)
	}
	if _, err := RotateIntermediate(dir, pw); err != nil {
		f.Fatal(err)
	}
	l := Layout{dir}
	b, err := os.ReadFile(l.RotationFile())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"roots":[],"intermediates":[]}`))
	f.Add([]byte(`{"roots":[{"generation":1,"cert":"x"}],"intermediates":[{"generation":1,"root":2}]}`))
	f.Add([]byte(`{"Roots":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := parseRotation(data)
		if err != nil {
			return
		}
		if len(rf.Roots) == 0 || len(rf.Intermediates) == 0 {
			t.Fatal("accepted without a root or an intermediate")
		}
		for _, ig := range rf.Intermediates {
			r := rf.root(ig.Root)
			if r == nil || ig.cert.CheckSignatureFrom(r.cert) != nil {
				t.Fatalf("accepted intermediate %d not signed by a held root", ig.Generation)
			}
		}
		if rf.issuing(time.Now()) == nil {
			t.Fatal("no issuing intermediate")
		}
	})
}
