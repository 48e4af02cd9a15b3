package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.step.sm/crypto/pemutil"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/apikey"
)

// DefaultAccessTokenTTL is the lifetime of an access token from the token
// endpoint, cut to the client certificate's remaining life.
const DefaultAccessTokenTTL = 5 * time.Minute

// maxTokenRequestBytes bounds a token request's body: a grant type, a
// resource, a scope and a client id fit in far less.
const maxTokenRequestBytes = 8 << 10

// The OAuth endpoints of the CA, under its URL.
const (
	MetadataPath = "/.well-known/oauth-authorization-server"
	TokenPath    = "/1.0/oauth/token"
	JWKSPath     = apikey.JWKSPath
)

// AccessTokenType is the JWS "typ" of the CA's access tokens (RFC 9068).
const AccessTokenType = "at+jwt"

// tokenSigner is the CA's token signing key: ES256, encrypted at rest with
// the CA password like the CA keys, signing access tokens and the API key
// set. Its public half is the JWKS.
type tokenSigner struct {
	key  *ecdsa.PrivateKey
	kid  string
	jwks []byte      // {"keys":[...]}
	at   jose.Signer // typ at+jwt
}

// loadTokenSigner reads secrets/token_signing_key, creating it on the
// first serve of a CA made before it existed.
func loadTokenSigner(l Layout, password []byte) (*tokenSigner, error) {
	path := l.TokenSigningKey()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, errorf("generating the token signing key: %w", err)
		}
		if err := writeEncryptedKey(path, k, password); err != nil {
			return nil, err
		}
	}
	v, err := pemutil.Read(path, pemutil.WithPassword(password))
	if err != nil {
		return nil, errorf("the password does not decrypt %s: wrong password?", path)
	}
	key, ok := v.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, errorf("%s is not an ECDSA P-256 key", path)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, errorf("token signing key: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, errorf("encoding the JWKS: %w", err)
	}
	at, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType(AccessTokenType).WithHeader("kid", pub.KeyID))
	if err != nil {
		return nil, errorf("token signer: %w", err)
	}
	return &tokenSigner{key: key, kid: pub.KeyID, jwks: append(jwks, '\n'), at: at}, nil
}

// AuthorizationServerMetadata is the CA's RFC 8414 metadata.
type AuthorizationServerMetadata struct {
	Issuer                                string   `json:"issuer"`
	TokenEndpoint                         string   `json:"token_endpoint"`
	JWKSURI                               string   `json:"jwks_uri"`
	GrantTypesSupported                   []string `json:"grant_types_supported"`
	ResponseTypesSupported                []string `json:"response_types_supported"`
	TokenEndpointAuthMethodsSupported     []string `json:"token_endpoint_auth_methods_supported"`
	TLSClientCertificateBoundAccessTokens bool     `json:"tls_client_certificate_bound_access_tokens"`
	// Not in RFC 8414's registry: the algorithm of the access tokens, as
	// several servers publish it.
	AccessTokenSigningAlgValuesSupported []string `json:"access_token_signing_alg_values_supported,omitempty"`
	// mcpca's own members (RFC 8414 section 2 allows more): where the
	// signed API key set is, and the trust domain of the principals the
	// CA's tokens and keys name. A resource server told to trust this
	// issuer finds here that it is an mcpca CA, and takes its API keys too.
	APIKeysURI  string `json:"mcpca_apikeys_uri"`
	TrustDomain string `json:"mcpca_trust_domain"`
}

func (s *Server) metadata(st *serverState) *AuthorizationServerMetadata {
	u := st.settings.CAURL()
	return &AuthorizationServerMetadata{
		Issuer:                                u,
		TokenEndpoint:                         u + TokenPath,
		JWKSURI:                               u + JWKSPath,
		GrantTypesSupported:                   []string{"client_credentials"},
		ResponseTypesSupported:                []string{},
		TokenEndpointAuthMethodsSupported:     []string{"tls_client_auth"},
		TLSClientCertificateBoundAccessTokens: true,
		AccessTokenSigningAlgValuesSupported:  []string{string(jose.ES256)},
		APIKeysURI:                            u + APIKeysPath,
		TrustDomain:                           st.settings.TrustDomain,
	}
}

// AccessTokenClaims are the claims of the CA's access tokens (RFC 9068,
// bound to the client certificate per RFC 8705).
type AccessTokenClaims struct {
	Issuer     string            `json:"iss"`
	Subject    string            `json:"sub"` // the client's SPIFFE ID
	Audience   string            `json:"aud"` // the resource asked for
	ClientID   string            `json:"client_id"`
	IssuedAt   int64             `json:"iat"`
	NotBefore  int64             `json:"nbf"`
	Expiry     int64             `json:"exp"`
	ID         string            `json:"jti"`
	Scope      string            `json:"scope,omitempty"`
	Roles      []string          `json:"roles,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Cnf        Confirmation      `json:"cnf"`
}

// Confirmation is the cnf claim: the SHA-256 thumbprint of the client
// certificate's DER, base64url (RFC 8705 §3.1).
type Confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// tokenResponse is RFC 6749 §5.1's answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// oauthError is an RFC 6749 §5.2 error answer.
type oauthError struct {
	status int
	Code   string `json:"error"`
	Desc   string `json:"error_description"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Desc }

func oauthErr(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, Code: code, Desc: fmt.Sprintf(format, args...)}
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.Code == "invalid_client" && e.status == http.StatusUnauthorized {
		// RFC 6749 §5.2: a 401 names the scheme the client must use.
		h.Set("WWW-Authenticate", `TLS realm="mcpca"`)
	}
	if e.status == http.StatusTooManyRequests {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e)
}

// sourceOf is the host part of a request's remote address.
func sourceOf(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// handleToken is the token endpoint: the client credentials grant, the
// client authenticated by its mcpca certificate over mTLS (RFC 8705
// tls_client_auth), one resource (RFC 8707) required; the answer is a JWT
// access token (RFC 9068) bound to the certificate. Failed requests count
// against their source's budget; a source past it gets 429.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, st *serverState) {
	now := s.cfg.clock.Now()
	src := sourceOf(r)
	if s.tokenFails.Limited(src, now) {
		writeOAuthError(w, oauthErr(http.StatusTooManyRequests, "invalid_request", "too many failed token requests from %s: try again later", src))
		return
	}
	resp, claims, oe := s.issueAccessToken(r, st, now)
	if oe != nil {
		s.tokenFails.Fail(src, now)
		s.cfg.logger.Warn("token refused", "event", "access_token", "status", oe.status, "error", oe.Code, "description", oe.Desc, "client", r.RemoteAddr)
		writeOAuthError(w, oe)
		return
	}
	s.cfg.logger.Info("access token issued", "event", "access_token", "identity", claims.Subject, "audience", claims.Audience,
		"jti", claims.ID, "exp", time.Unix(claims.Expiry, 0).UTC().Format(time.RFC3339), "client", r.RemoteAddr)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) issueAccessToken(r *http.Request, st *serverState, now time.Time) (*tokenResponse, *AccessTokenClaims, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, nil, oauthErr(http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST, not %s", r.Method)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, nil, oauthErr(http.StatusBadRequest, "invalid_request", "the token request must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxTokenRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, oauthErr(http.StatusRequestEntityTooLarge, "invalid_request", "token request body exceeds the limit of %d bytes", maxTokenRequestBytes)
		}
		return nil, nil, oauthErr(http.StatusBadRequest, "invalid_request", "reading the token request: %v", err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, nil, oauthErr(http.StatusBadRequest, "invalid_request", "the token request body is not form-encoded: %v", err)
	}
	for k, v := range form {
		if len(v) > 1 && k != "resource" {
			return nil, nil, oauthErr(http.StatusBadRequest, "invalid_request", "parameter %q is repeated (RFC 6749 §3.2)", truncateValue(k))
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		return nil, nil, oauthErr(http.StatusBadRequest, "invalid_request", "missing grant_type: this server grants client_credentials")
	case "client_credentials":
	default:
		return nil, nil, oauthErr(http.StatusBadRequest, "unsupported_grant_type", "grant_type %q is not supported: this server grants client_credentials only", truncateValue(gt))
	}
	if _, _, basic := r.BasicAuth(); basic || form.Has("client_secret") || form.Has("client_assertion") {
		return nil, nil, oauthErr(http.StatusUnauthorized, "invalid_client", "this server authenticates clients by their mcpca certificate over mTLS only (tls_client_auth): send no secret or assertion")
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, nil, oauthErr(http.StatusUnauthorized, "invalid_client", "no client certificate: authenticate with your mcpca certificate over mTLS (tls_client_auth)")
	}
	leaf := r.TLS.PeerCertificates[0]
	id, err := st.verifier.Verify(r.TLS.PeerCertificates, identity.KindClient)
	if err != nil {
		return nil, nil, oauthErr(http.StatusUnauthorized, "invalid_client", "client certificate refused: %v", err)
	}
	serial := leaf.SerialNumber.String()
	if revoked, err := s.db.IsRevoked(serial); err != nil {
		return nil, nil, oauthErr(http.StatusInternalServerError, "server_error", "reading the revocation state; see the CA log")
	} else if revoked {
		return nil, nil, oauthErr(http.StatusUnauthorized, "invalid_client", "client certificate (serial %s) is revoked", serial)
	}
	if s.store != nil {
		rec, err := s.store.IdentityRevocation(id.ID.String())
		if err != nil {
			return nil, nil, oauthErr(http.StatusInternalServerError, "server_error", "reading the revocation state; see the CA log")
		}
		if rec != nil && leaf.NotBefore.Before(rec.At) {
			return nil, nil, oauthErr(http.StatusUnauthorized, "invalid_client", "identity %s was revoked at %s, after this certificate was issued", id.ID, rec.At.UTC().Format(time.RFC3339))
		}
	}
	sid := id.ID.String()
	if cid := form.Get("client_id"); cid != "" && cid != sid {
		return nil, nil, oauthErr(http.StatusUnauthorized, "invalid_client", "client_id %q is not the client certificate's SPIFFE ID %s", truncateValue(cid), sid)
	}
	resources := form["resource"]
	switch {
	case len(resources) == 0:
		return nil, nil, oauthErr(http.StatusBadRequest, "invalid_target", "missing resource: name the resource server the token is for (RFC 8707), e.g. resource=https://mcp.example.com/mcp")
	case len(resources) > 1:
		return nil, nil, oauthErr(http.StatusBadRequest, "invalid_target", "%d resources: this server issues a token for one resource; ask once per resource", len(resources))
	}
	resource := resources[0]
	if err := apikey.CheckAudience(resource); err != nil {
		return nil, nil, oauthErr(http.StatusBadRequest, "invalid_target", "resource %q is not an absolute https URL without fragment (RFC 8707)", truncateValue(resource))
	}
	var scope string
	if req := strings.Fields(form.Get("scope")); len(req) > 0 {
		for _, sc := range req {
			if !slices.Contains(id.Roles, sc) {
				return nil, nil, oauthErr(http.StatusBadRequest, "invalid_scope", "scope %q is not one of the certificate's roles (%s): a token's scopes are its roles", truncateValue(sc), listOrNone(id.Roles))
			}
		}
		scope = strings.Join(req, " ")
	}
	ttl := min(s.cfg.accessTokenTTL, leaf.NotAfter.Sub(now))
	if ttl < time.Second {
		return nil, nil, oauthErr(http.StatusUnauthorized, "invalid_client", "client certificate (serial %s) expires at %s: renew it first", serial, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return nil, nil, oauthErr(http.StatusInternalServerError, "server_error", "see the CA log")
	}
	thumb := sha256.Sum256(leaf.Raw)
	c := &AccessTokenClaims{
		Issuer: st.settings.CAURL(), Subject: sid, Audience: resource, ClientID: sid,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(ttl).Unix(), ID: hex.EncodeToString(jti[:]),
		Scope: scope, Roles: id.Roles, Attributes: id.Attributes,
		Cnf: Confirmation{X5tS256: base64.RawURLEncoding.EncodeToString(thumb[:])},
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, nil, oauthErr(http.StatusInternalServerError, "server_error", "see the CA log")
	}
	obj, err := s.signer.at.Sign(payload)
	if err != nil {
		return nil, nil, oauthErr(http.StatusInternalServerError, "server_error", "see the CA log")
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		return nil, nil, oauthErr(http.StatusInternalServerError, "server_error", "see the CA log")
	}
	return &tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: c.Expiry - c.IssuedAt, Scope: scope}, c, nil
}
