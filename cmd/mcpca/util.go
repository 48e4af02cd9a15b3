package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"os"
	"strings"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/atomicfile"
	"github.com/mcpca/mcpca/internal/caclient"
	"github.com/mcpca/mcpca/internal/pemfile"
	"github.com/mcpca/mcpca/internal/secretfile"
)

// readPassword reads the CA password from file, or from the generated
// <dir>/secrets/password when file is empty, warning on warn when group or
// others can read the file.
func readPassword(warn io.Writer, file, dir string) ([]byte, error) {
	if file == "" {
		if dir == "" {
			return nil, errors.New("no password: pass --password-file")
		}
		file = ca.Layout{Dir: dir}.PasswordFile()
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("no password: %s does not exist, pass --password-file", file)
		}
	}
	b, err := secretfile.Read(file, warn)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	pw := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(pw) == 0 {
		return nil, fmt.Errorf("password file %s is empty", file)
	}
	return pw, nil
}

// readToken reads an enrolment token from file, warning on warn when group
// or others can read it.
func readToken(warn io.Writer, file string) (string, error) {
	b, err := secretfile.Read(file, warn)
	if err != nil {
		return "", fmt.Errorf("reading token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// loadRoots reads a PEM file of root certificates.
func loadRoots(file string) (*x509.CertPool, []*x509.Certificate, error) {
	if file == "" {
		return nil, nil, errors.New("missing --root (the CA's root certificate; get it with `mcpca bootstrap`)")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("reading root: %w", err)
	}
	certs, err := pemfile.ParseCertificates(b, pemfile.SkipOthers)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, certs, nil
}

func newClient(caURL, rootFile string) (*caclient.Client, error) {
	if err := checkCAURL(caURL); err != nil {
		return nil, err
	}
	pool, _, err := loadRoots(rootFile)
	if err != nil {
		return nil, err
	}
	return caclient.New(caURL, pool)
}

// checkCAURL refuses a missing --ca-url.
func checkCAURL(caURL string) error {
	if caURL == "" {
		return errors.New("missing --ca-url (e.g. https://127.0.0.1:9443)")
	}
	return nil
}

// caError says what the CA answered, from the typed refusal, without the
// layers of the library that carried it.
func caError(err error) error {
	var apiErr *agent.APIError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return err
}

// loadPair reads a certificate chain and its key.
func loadPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, errors.New("missing --cert or --key")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
	}
	return pair, nil
}

// generateKey makes a new private key of the named type.
func generateKey(kind string) (crypto.Signer, error) {
	switch strings.ToLower(kind) {
	case "", "p256", "ec", "ecdsa":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "rsa", "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unknown key type %q: use p256, p384, ed25519 or rsa2048", kind)
}

// writeChain writes leaf + intermediates as PEM, atomically.
func writeChain(path string, chain []*x509.Certificate) error {
	return atomicfile.WriteFile(path, pemfile.EncodeCertificates(chain...), 0o644)
}

// readCertificates reads every PEM certificate of file, leaf first.
func readCertificates(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	certs, err := pemfile.ParseCertificates(data, pemfile.SkipOthers)
	switch {
	case errors.Is(err, pemfile.ErrNoCertificate):
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return certs, nil
}

// oidOptions turns an --oid-arc flag into parse options.
func oidOptions(arc string) ([]identity.ParseOption, error) {
	if arc == "" {
		return nil, nil
	}
	a, err := identity.ParseOIDArc(arc)
	if err != nil {
		return nil, err
	}
	return []identity.ParseOption{identity.WithOIDs(identity.OIDsFromArc(a))}, nil
}

// parseSerial reads a certificate serial number as an operator may have it:
// decimal (as enroll, renew and inspect print it), hex with 0x (as inspect
// prints it in brackets; audit logs and policies show the same digits
// without the 0x), or colon-separated hex bytes (as openssl prints it).
func parseSerial(s string) (*big.Int, error) {
	bad := fmt.Errorf("--serial %q is not a serial number: give it in decimal (as enroll and inspect print it) or in hex with 0x (audit logs print hex without it)", s)
	t := strings.TrimSpace(s)
	base := 10
	switch {
	case strings.HasPrefix(t, "0x"), strings.HasPrefix(t, "0X"):
		t, base = t[2:], 16
	case strings.Contains(t, ":"):
		t, base = strings.ReplaceAll(t, ":", ""), 16
	}
	if t == "" || strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+") {
		return nil, bad
	}
	n, ok := new(big.Int).SetString(t, base)
	if !ok || n.Sign() <= 0 {
		return nil, bad
	}
	return n, nil
}

// serialText renders a serial as "decimal (0xhex)".
func serialText(n *big.Int) string { return n.String() + " (0x" + n.Text(16) + ")" }

// databaseDSN returns the PostgreSQL connection string of --database (when
// it is a postgres:// URL) or --database-file, or "" for the file stores.
func databaseDSN(warn io.Writer, database, file string) (string, error) {
	isURL := strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
	switch {
	case file != "" && database != "" && database != "store":
		return "", errors.New("--database and --database-file: give one")
	case file != "":
		b, err := secretfile.Read(file, warn)
		if err != nil {
			return "", fmt.Errorf("reading --database-file: %w", err)
		}
		dsn := strings.TrimSpace(string(b))
		if dsn == "" {
			return "", fmt.Errorf("--database-file %s is empty: want a postgres:// URL", file)
		}
		return dsn, nil
	case isURL:
		if u, err := url.Parse(database); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				fmt.Fprintln(warn, "mcpca: warning: the password in --database is visible to every user of this host (ps, /proc): put the URL in a file only you can read and pass --database-file")
			}
		}
		return database, nil
	}
	return "", nil
}
