package ca

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A crafted config/rotation.json cannot make the CA issue from an
// intermediate after its certificate expires: parsing refuses an
// issuesFrom at or past the certificate's notAfter.
func TestParseRotationRefusesIssuingPastExpiry(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	pw := []byte("test-password-1234")
	if _, err := Init(InitConfig{Dir: dir, Name: "Parse", TrustDomain: "acme.test", Address: "127.0.0.1:1", Password: pw}); err != nil {
		t.Fatal(err)
	}
	if _, err := RotateIntermediate(dir, pw); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(Layout{dir}.RotationFile())
	if err != nil {
		t.Fatal(err)
	}
	rf, err := parseRotation(b)
	if err != nil {
		t.Fatal(err)
	}
	ig := rf.Intermediates[1]
	ig.IssuesFrom = ig.cert.NotAfter.Add(time.Hour).UTC().Truncate(time.Second)
	crafted, err := json.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	_, err = parseRotation(crafted)
	want := "ca: intermediate generation 2 issues from " + ig.IssuesFrom.Format(time.RFC3339) + ", not before its certificate expires (" + ig.cert.NotAfter.UTC().Format(time.RFC3339) + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}
