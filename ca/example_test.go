package ca_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
)

// Create a CA directory, mint an enrolment token, and open the CA to serve
// it (ListenAndServe on its address; `mcpca serve` does this).
func Example() {
	dir, err := os.MkdirTemp("", "mcpca-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	password := []byte("correct horse battery staple 42")
	res, err := ca.Init(ca.InitConfig{Dir: dir + "/pki", Name: "Example CA", TrustDomain: "acme.test",
		Address: "127.0.0.1:9443", Password: password})
	if err != nil {
		log.Fatal(err)
	}
	token, err := ca.MintToken(dir+"/pki", password, ca.TokenRequest{
		Kind: identity.KindClient, Name: "reporter", Roles: []string{"reader"}, TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := ca.Open(dir+"/pki", password)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close(context.Background())
	fmt.Println(res.CAURL, srv.Settings().TrustDomain, strings.Count(token, "."))
	// Output: https://127.0.0.1:9443 acme.test 2
}
