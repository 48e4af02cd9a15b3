package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/caclient"
)

// CAClient renews certificates, fetches the trust bundle and redeems
// enrolment tokens through an mcpca CA's HTTP API (step-ca's wire format),
// over TLS to CAURL. It is a Renewer and a BundleFetcher.
type CAClient struct {
	// CAURL is the CA's https URL.
	CAURL string
	// TrustRoots returns the roots the CA's TLS certificate must chain
	// to. It is called for every request, so a rotated bundle is used at
	// once; pass a Source's RootPool, or a fixed pool.
	TrustRoots func() *x509.CertPool
	// Rekey makes Renew ask for a certificate for a new P-256 key instead
	// of the current one.
	Rekey bool
	// Clock decides whether the current certificate has expired, in which
	// case Renew fails at once ("enrol again") without asking the CA. Give
	// it the Source's clock. Default clock.Real.
	Clock clock.Clock
}

func (c *CAClient) client() (*caclient.Client, error) {
	var pool *x509.CertPool
	if c.TrustRoots != nil {
		pool = c.TrustRoots()
	}
	cl, err := caclient.New(c.CAURL, pool, caclient.WithClock(c.Clock))
	if err != nil {
		return nil, errorf("%w", err)
	}
	return cl, nil
}

// Renew obtains the successor of current over mTLS: the same key, or a new
// one when Rekey is set.
func (c *CAClient) Renew(ctx context.Context, current tls.Certificate) (tls.Certificate, error) {
	cl, err := c.client()
	if err != nil {
		return tls.Certificate{}, err
	}
	if !c.Rekey {
		chain, err := cl.Renew(ctx, current)
		if err != nil {
			return tls.Certificate{}, errorf("renewing: %w", err)
		}
		return pairChain(chain, current.PrivateKey)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, errorf("generating a key: %w", err)
	}
	tmpl := &x509.CertificateRequest{}
	if leaf := current.Leaf; leaf != nil {
		tmpl.Subject = pkix.Name{CommonName: leaf.Subject.CommonName}
		tmpl.DNSNames, tmpl.IPAddresses, tmpl.URIs, tmpl.EmailAddresses = leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return tls.Certificate{}, errorf("creating a CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return tls.Certificate{}, errorf("creating a CSR: %w", err)
	}
	chain, err := cl.Rekey(ctx, current, csr)
	if err != nil {
		return tls.Certificate{}, errorf("re-keying: %w", err)
	}
	return pairChain(chain, key)
}

// Roots fetches the CA's current roots.
func (c *CAClient) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	roots, err := cl.Roots(ctx)
	if err != nil {
		return nil, errorf("fetching the trust bundle: %w", err)
	}
	return roots, nil
}

// Enroll redeems a one-time enrolment token: it generates a P-256 key here
// (the key never leaves the host), builds a CSR for the names the token
// grants (its "sans" claim) and has the CA sign it. An answer of the CA
// refusing the token wraps a *caclient.APIError.
func (c *CAClient) Enroll(ctx context.Context, token string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, errorf("generating a key: %w", err)
	}
	return c.EnrollKey(ctx, token, key)
}

// EnrollKey is Enroll with a key of the caller's (P-384, Ed25519 or RSA
// instead of the default P-256; the CA refuses what its key policy does).
func (c *CAClient) EnrollKey(ctx context.Context, token string, key crypto.Signer) (tls.Certificate, error) {
	cl, err := c.client()
	if err != nil {
		return tls.Certificate{}, err
	}
	csr, err := caclient.CSRForToken(token, key)
	if err != nil {
		return tls.Certificate{}, errorf("enrolling: %w", err)
	}
	chain, err := cl.Sign(ctx, csr, token)
	if err != nil {
		return tls.Certificate{}, errorf("enrolling: %w", err)
	}
	return pairChain(chain, key)
}

// pairChain makes a tls.Certificate of a chain and its key, checking that
// they match.
func pairChain(chain []*x509.Certificate, key crypto.PrivateKey) (tls.Certificate, error) {
	if len(chain) == 0 {
		return tls.Certificate{}, errorf("the CA returned no certificate")
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return prepareCertificate(c)
}
