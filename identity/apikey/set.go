package apikey

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"net/url"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/strictjson"
)

// SetType is the JWS "typ" of a signed key set.
const SetType = "mcpca-apikeys+jwt"

// MaxSetKeys bounds the entries of a key set a verifier accepts.
const MaxSetKeys = 100_000

// MaxSetBytes bounds the size of a signed key set a verifier reads.
const MaxSetBytes = 32 << 20

// MaxTTL is the longest lifetime of an API key.
const MaxTTL = 366 * 24 * time.Hour

// Set is the CA's list of the API keys in force: no key, only hashes. The
// CA serves it at <ca-url>/1.0/apikeys as a compact JWS (typ SetType,
// ES256) signed by its token signing key, the key its JWKS publishes.
type Set struct {
	Issuer     string  `json:"iss"`         // the CA's URL
	IssuedAt   int64   `json:"issued_at"`   // Unix seconds; a verifier never goes back to an older set
	NextUpdate int64   `json:"next_update"` // Unix seconds; past it the set is stale and every key is refused
	Keys       []Entry `json:"keys"`
}

// Entry is one API key in a Set.
type Entry struct {
	Name       string            `json:"name"`
	Hash       string            `json:"hash"` // EncodeHash of the key's SHA-256
	Roles      []string          `json:"roles,omitempty"`
	Attributes map[string]string `json:"attrs,omitempty"`
	Audience   string            `json:"audience"` // the resource (URL) the key is for
	Expires    int64             `json:"exp"`      // Unix seconds
}

// ValidName reports whether s may name an API key: 1-64 characters of
// [a-z0-9._-], starting with a letter or digit.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// CheckAudience accepts an audience as keys and tokens carry it: an
// absolute https URL without fragment (RFC 8707's resource indicator).
func CheckAudience(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" || u.User != nil || len(s) > 2048 {
		return errorf("audience %q is not an absolute https URL without fragment (e.g. https://mcp.example.com/mcp)", truncate(s))
	}
	return nil
}

// Check validates an entry as a verifier would before trusting it.
func (e *Entry) Check() error {
	if !ValidName(e.Name) {
		return errorf("key name %q: use 1-64 characters of [a-z0-9._-], starting with a letter or digit", truncate(e.Name))
	}
	if _, err := DecodeHash(e.Hash); err != nil {
		return errorf("key %s: %w", e.Name, err)
	}
	if err := identity.ValidateRoles(e.Roles); err != nil {
		return errorf("key %s: %w", e.Name, err)
	}
	if err := identity.ValidateAttributes(e.Attributes); err != nil {
		return errorf("key %s: %w", e.Name, err)
	}
	if err := CheckAudience(e.Audience); err != nil {
		return errorf("key %s: %w", e.Name, err)
	}
	if e.Expires <= 0 {
		return errorf("key %s: no expiry", e.Name)
	}
	return nil
}

// SignSet signs s with key (ECDSA P-256: ES256) under the key id kid.
func SignSet(s *Set, key crypto.Signer, kid string) (string, error) {
	if _, ok := key.Public().(*ecdsa.PublicKey); !ok {
		return "", errorf("the key set is signed with ES256: the key is not ECDSA")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType(SetType).WithHeader("kid", kid))
	if err != nil {
		return "", errorf("key set signer: %w", err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", errorf("encoding the key set: %w", err)
	}
	obj, err := signer.Sign(b)
	if err != nil {
		return "", errorf("signing the key set: %w", err)
	}
	return obj.CompactSerialize()
}

// ParseSet verifies a signed key set (compact JWS, ES256, typ SetType) with
// the key of its "kid" from keys, and checks its issuer and every entry.
// It does not judge freshness: the Verifier does, by its clock.
func ParseSet(jws string, keys *jose.JSONWebKeySet, issuer string) (*Set, error) {
	if len(jws) > MaxSetBytes {
		return nil, errorf("key set of %d bytes exceeds the limit of %d", len(jws), MaxSetBytes)
	}
	obj, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, errorf("key set is not a compact ES256 JWS: %w", err)
	}
	if len(obj.Signatures) != 1 {
		return nil, errorf("key set has %d signatures, want 1", len(obj.Signatures))
	}
	h := obj.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != SetType {
		return nil, errorf("key set has typ %q, want %q", truncate(typ), SetType)
	}
	if keys == nil {
		return nil, errorf("no signing keys to verify the key set with")
	}
	found := keys.Key(h.KeyID)
	if len(found) == 0 {
		return nil, errorf("key set is signed with key %q, which the CA's JWKS does not hold", truncate(h.KeyID))
	}
	payload, err := obj.Verify(found[0].Key)
	if err != nil {
		return nil, errorf("key set signature does not verify with key %q", truncate(h.KeyID))
	}
	var s Set
	if err := strictjson.Unmarshal(payload, &s); err != nil {
		return nil, errorf("key set payload refused: %w", err)
	}
	switch {
	case s.Issuer != issuer:
		return nil, errorf("key set issuer %q is not %q", truncate(s.Issuer), issuer)
	case s.IssuedAt <= 0 || s.NextUpdate <= s.IssuedAt:
		return nil, errorf("key set has issued_at %d and next_update %d: want 0 < issued_at < next_update", s.IssuedAt, s.NextUpdate)
	case len(s.Keys) > MaxSetKeys:
		return nil, errorf("key set has %d keys, the limit is %d", len(s.Keys), MaxSetKeys)
	}
	for i := range s.Keys {
		if err := s.Keys[i].Check(); err != nil {
			return nil, err
		}
	}
	return &s, nil
}
