package identity

import (
	"net/url"
	"strings"
)

// Kind is the kind of an mcpca identity: the first path segment of its SPIFFE ID.
type Kind string

// The two kinds of identity.
const (
	KindClient Kind = "client"
	KindServer Kind = "server"
)

// Valid reports whether k is KindClient or KindServer.
func (k Kind) Valid() bool { return k == KindClient || k == KindServer }

// ID is an mcpca SPIFFE ID: spiffe://<trust-domain>/<kind>/<name>.
type ID struct {
	TrustDomain string
	Kind        Kind
	Name        string
}

// MaxNameLen bounds the name segment of an ID.
const MaxNameLen = 128

// NewID builds and validates an ID.
func NewID(trustDomain string, kind Kind, name string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Kind: kind, Name: name}
	if err := id.Validate(); err != nil {
		return ID{}, err
	}
	return id, nil
}

// Validate checks the trust domain ([a-z0-9._-]{1,255}), the kind and the
// name ([A-Za-z0-9._-]{1,128}, not "." or "..").
func (id ID) Validate() error {
	if !ValidTrustDomain(id.TrustDomain) {
		return errorf("invalid trust domain %q: use 1-255 characters of [a-z0-9._-]", truncate(id.TrustDomain))
	}
	if !id.Kind.Valid() {
		return errorf("invalid kind %q: must be %q or %q", truncate(string(id.Kind)), KindClient, KindServer)
	}
	if !ValidName(id.Name) {
		return errorf("invalid name %q: use 1-%d characters of [A-Za-z0-9._-]", truncate(id.Name), MaxNameLen)
	}
	return nil
}

// String returns the SPIFFE ID as a URI string.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/" + string(id.Kind) + "/" + id.Name
}

// Path returns "<kind>/<name>", the part of the ID that name patterns match.
func (id ID) Path() string { return string(id.Kind) + "/" + id.Name }

// URL returns the ID as a *url.URL, ready for a certificate's URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/" + id.Path()}
}

// ParseID parses "spiffe://<trust-domain>/<kind>/<name>".
func ParseID(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return ID{}, errorf("invalid SPIFFE ID %q: scheme must be spiffe://", truncate(s))
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, errorf("invalid SPIFFE ID %q: want spiffe://<trust-domain>/<client|server>/<name>", truncate(s))
	}
	kind, name, ok := strings.Cut(path, "/")
	if !ok {
		return ID{}, errorf("invalid SPIFFE ID %q: want spiffe://<trust-domain>/<client|server>/<name>", truncate(s))
	}
	return NewID(td, Kind(kind), name)
}

// fromURL converts a URI SAN, rejecting the URL parts SPIFFE forbids.
func fromURL(u *url.URL) (ID, error) {
	if u.Scheme != "spiffe" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" || u.Opaque != "" {
		return ID{}, errorf("invalid SPIFFE ID %q: %w", truncate(u.String()), ErrNotSVID)
	}
	return ParseID(u.String())
}

// ValidTrustDomain reports whether s is a valid trust domain name.
func ValidTrustDomain(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidName reports whether s is a valid identity name.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
