package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"

	"github.com/mcpca/mcpca/internal/atomicfile"
	"github.com/mcpca/mcpca/internal/pemfile"
)

// FileSink writes a Snapshot to files, for the consumers that read
// certificates from disk. It implements Store.
//
// Every file is replaced atomically: its new content goes to a temporary file
// in the same directory, which is fsynced and renamed over the old one, and
// the directory is fsynced. A reader sees the old content or the new, never a
// mix.
//
// Files are replaced in two phases: all temporary files are written first,
// and only when every one of them is safely on disk are they renamed. A
// failure while writing (a full disk, a read-only directory, a missing
// directory) leaves every previous file as it was.
//
// The renames go in this order: bundle, key, certificate, combined file. The
// bundle goes first because the new certificate may chain to a new root. The
// key goes before the certificate so that a reader that reads the
// certificate and then the key (as tls.LoadX509KeyPair, nginx and most
// servers do) never pairs a new certificate with an old key. A key that did
// not change is not rewritten at all, so without re-keying a renewal renames
// one file and no reader can ever see a mismatched pair. With re-keying, a
// reader that reads the key first could, in the instant between two renames,
// see an old certificate with the new key: tls.LoadX509KeyPair rejects such
// a pair ("private key does not match public key"), and the reload hooks run
// only after every file is in place. Readers that cannot order their reads
// should use CombinedFile, which holds the key and the chain in one file.
type FileSink struct {
	// CertFile receives the chain, leaf first, PEM (mode 0644).
	CertFile string
	// KeyFile receives the private key, PKCS#8 PEM (mode 0600).
	KeyFile string
	// BundleFile, if set, receives the trust bundle, PEM (mode 0644). An
	// empty bundle is never written over it.
	BundleFile string
	// CombinedFile, if set, receives the key followed by the chain in one
	// file (mode 0600), for readers that want the pair in one read.
	CombinedFile string
}

// CheckWritable reports whether every file of the sink can be written: its
// directory exists or can be created (Store creates it too, and so does
// this check) and takes new files, and the path is not a directory. It
// writes no file. Check it before spending a one-time token on a
// certificate that could not be stored.
func (f *FileSink) CheckWritable() error {
	for _, path := range []string{f.CertFile, f.KeyFile, f.BundleFile, f.CombinedFile} {
		if path == "" {
			continue
		}
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			return errorf("cannot write %s: it is a directory (the token was not used)", path)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return errorf("cannot write %s: %v (the token was not used)", path, pathErr(err))
		}
		tmp, err := os.CreateTemp(filepath.Dir(path), ".mcpca-check-*")
		if err != nil {
			return errorf("cannot write %s: %v (the token was not used)", path, pathErr(err))
		}
		name := tmp.Name()
		_ = tmp.Close()
		_ = os.Remove(name)
	}
	return nil
}

// Store writes s to the sink's files.
func (f *FileSink) Store(_ context.Context, s *Snapshot) error {
	if f.CertFile == "" || f.KeyFile == "" {
		return errorf("file sink needs both a certificate and a key file")
	}
	chain := chainPEM(s.Certificate)
	keyPEM, err := encodeKey(s.Certificate.PrivateKey)
	if err != nil {
		return err
	}
	var files []atomicfile.File
	if f.BundleFile != "" && len(s.Roots) > 0 {
		files = append(files, atomicfile.File{Path: f.BundleFile, Data: pemCertificates(s.Roots), Mode: 0o644})
	}
	if !sameKeyOnDisk(f.KeyFile, s.Key()) {
		files = append(files, atomicfile.File{Path: f.KeyFile, Data: keyPEM, Mode: 0o600})
	}
	files = append(files, atomicfile.File{Path: f.CertFile, Data: chain, Mode: 0o644})
	if f.CombinedFile != "" {
		files = append(files, atomicfile.File{Path: f.CombinedFile, Data: append(append([]byte{}, keyPEM...), chain...), Mode: 0o600})
	}
	for _, file := range files {
		if err := os.MkdirAll(filepath.Dir(file.Path), 0o755); err != nil {
			return errorf("writing %s: %w", file.Path, pathErr(err))
		}
	}
	if err := atomicfile.WriteFiles(files...); err != nil {
		return errorf("%w", err)
	}
	return nil
}

// pathErr drops the operation and path of an *os.PathError, which the
// message already names.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sameKeyOnDisk reports whether path holds a private key whose public key is
// that of key, so an unchanged key is never rewritten.
func sameKeyOnDisk(path string, key crypto.Signer) bool {
	if key == nil {
		return false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	onDisk, err := parseKey(b)
	if err != nil {
		return false
	}
	pub, ok := onDisk.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// LoadKeyPair reads a certificate chain and its key from PEM files. When a
// file is missing the error wraps fs.ErrNotExist.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, errorf("reading certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, errorf("reading key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, errorf("loading %s and %s: %v", certFile, keyFile, err)
	}
	return cert, nil
}

// LoadCertificates reads every certificate of a PEM file (a root or bundle
// file).
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf("reading certificates: %v", err)
	}
	out, err := pemfile.ParseCertificates(b, pemfile.SkipOthers)
	switch {
	case errors.Is(err, pemfile.ErrNoCertificate):
		return nil, errorf("%s holds no certificate", path)
	case err != nil:
		return nil, errorf("parsing %s: %v", path, err)
	}
	return out, nil
}

func chainPEM(c tls.Certificate) []byte { return pemfile.EncodeChain(c) }

func pemCertificates(certs []*x509.Certificate) []byte { return pemfile.EncodeCertificates(certs...) }

func encodeKey(k crypto.PrivateKey) ([]byte, error) {
	b, err := pemfile.EncodeKey(k)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return b, nil
}

// parseKey reads the first private key of PEM data (pemfile.ParseKey).
func parseKey(b []byte) (crypto.Signer, error) {
	k, err := pemfile.ParseKey(b)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return k, nil
}

// Enroll redeems token with c for a certificate of key (a new P-256 key
// when nil) and stores it in s, the agent's one enrol-and-store path: the
// destination is checked before the token is spent (a token redeemed for
// a certificate that cannot be kept is lost), and the key, chain and
// roots (written to BundleFile when given) are written as one step.
func (s *FileSink) Enroll(ctx context.Context, c *CAClient, token string, key crypto.Signer, roots ...*x509.Certificate) (*Snapshot, error) {
	if err := s.CheckWritable(); err != nil {
		return nil, err
	}
	var cert tls.Certificate
	var err error
	if key == nil {
		cert, err = c.Enroll(ctx, token)
	} else {
		cert, err = c.EnrollKey(ctx, token, key)
	}
	if err != nil {
		return nil, err
	}
	snap, err := NewSnapshot(cert, roots)
	if err != nil {
		return nil, err
	}
	if err := s.Store(ctx, snap); err != nil {
		return nil, errorf("writing the enrolled certificate: %w", err)
	}
	return snap, nil
}
