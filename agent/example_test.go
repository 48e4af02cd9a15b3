package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpca/mcpca/agent"
)

// selfSigned stands in for a certificate issued by the CA.
func selfSigned(name string, lifetime time.Duration) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(lifetime), DNSNames: []string{name}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// A Go server embeds a Source: its tls.Config always presents the current
// certificate, renewed in the background, and trusts the current bundle.
func ExampleSource() {
	// In production: agent.LoadKeyPair (or CAClient.Enroll) for the first
	// certificate, and a CAClient to renew it and fetch the bundle:
	//
	//	ca := &agent.CAClient{CAURL: "https://ca.example:9000", TrustRoots: ...}
	//	src, err := agent.NewSource(cert, ca, agent.WithBundle(ca, 0), agent.WithRoots(roots))
	cert := selfSigned("web.example", 24*time.Hour)
	renewer := agent.RenewerFunc(func(ctx context.Context, cur tls.Certificate) (tls.Certificate, error) {
		return selfSigned("web.example", 24*time.Hour), nil
	})
	src, err := agent.NewSource(cert, renewer, agent.WithRenewAt(0.66), agent.WithRoots([]*x509.Certificate{cert.Leaf}))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx)

	cfg := &tls.Config{
		GetCertificate: src.GetCertificate,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      src.RootPool(),
	}
	_ = cfg // tls.Listen("tcp", addr, cfg)

	src.Subscribe(func(s *agent.Snapshot) { fmt.Println("renewed, now expires", s.NotAfter()) })
	fmt.Println("serving", src.Current().Leaf().Subject.CommonName)
	// Output: serving web.example
}

// The daemon writes every renewal with a FileSink, atomically, and runs the
// reload hooks afterwards.
func ExampleFileSink() {
	dir, _ := os.MkdirTemp("", "agent-example")
	defer os.RemoveAll(dir)
	sink := &agent.FileSink{
		CertFile:     filepath.Join(dir, "cert.pem"),
		KeyFile:      filepath.Join(dir, "key.pem"),
		CombinedFile: filepath.Join(dir, "combined.pem"),
	}
	cert := selfSigned("web.example", time.Hour)
	src, _ := agent.NewSource(cert, agent.RenewerFunc(func(context.Context, tls.Certificate) (tls.Certificate, error) {
		return selfSigned("web.example", time.Hour), nil
	}), agent.WithStore(sink))
	if err := sink.Store(context.Background(), src.Current()); err != nil {
		log.Fatal(err)
	}
	hooks := agent.NewHooks(nil, &agent.Command{Argv: []string{"true"}, Timeout: 10 * time.Second})
	src.Subscribe(hooks.Notify)

	onDisk, err := agent.LoadKeyPair(sink.CertFile, sink.KeyFile)
	if err != nil {
		log.Fatal(err)
	}
	fi, _ := os.Stat(sink.KeyFile)
	fmt.Println(onDisk.Leaf.Subject.CommonName, fi.Mode().Perm())
	// Output: web.example -rw-------
}

// One call gives a program its certificate (enrolled with a token, kept in
// files and renewed), the CA's bundle and CRL, and TLS configurations that
// verify peers with them. It returns once all are loaded.
func ExampleNewWorkload() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := agent.NewWorkload(ctx, "https://ca.example:9443",
		agent.WithRootFingerprint("4c3b..."), // as `mcpca init` printed it; or agent.WithRootFile("root_ca.crt")
		agent.WithToken(os.Getenv("MCPCA_TOKEN")),
		agent.WithKeyPairFiles("files.crt", "files.key"))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	srv := &http.Server{Addr: ":8443", TLSConfig: w.ServerTLSConfig(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
