package ca

import (
	"errors"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/apikey"
)

// DefaultKeySetValidity is how long a signed API key set stays good
// (next_update - issued_at): the bound on how long a revoked key can still
// be accepted by a server cut off from the CA.
const DefaultKeySetValidity = time.Minute

// APIKeysPath is where the CA serves its signed API key set (GET) and
// manages API keys (POST, with an operator token).
const APIKeysPath = apikey.SetPath

// APIKeyRequest is the body of POST /1.0/apikeys: an operation, the
// one-time operator token for it (MintAPIKeyToken, whose subject is
// APIKeyTokenSubject of the same request) and its arguments. The key itself
// never reaches the CA: the client generates it and sends its hash.
type APIKeyRequest struct {
	Token      string            `json:"token"`
	Op         string            `json:"op"` // "create", "list" or "revoke"
	Name       string            `json:"name,omitempty"`
	Hash       string            `json:"hash,omitempty"` // create: apikey.EncodeHash of the key
	Roles      []string          `json:"roles,omitempty"`
	Attributes map[string]string `json:"attrs,omitempty"`
	Audience   string            `json:"audience,omitempty"`
	TTL        string            `json:"ttl,omitempty"` // create: e.g. "720h"
}

// APIKeyInfo describes an API key in answers: never the key, nor its hash.
type APIKeyInfo struct {
	Name        string            `json:"name"`
	Roles       []string          `json:"roles,omitempty"`
	Attributes  map[string]string `json:"attrs,omitempty"`
	Audience    string            `json:"audience"`
	CreatedAt   time.Time         `json:"created_at"`
	ExpiresAt   time.Time         `json:"expires_at"`
	RevokedAt   time.Time         `json:"revoked_at,omitzero"`
	Provisioner string            `json:"provisioner,omitempty"`
}

// APIKeyResponse is the answer to POST /1.0/apikeys.
type APIKeyResponse struct {
	Status string       `json:"status"`
	Keys   []APIKeyInfo `json:"keys"`
}

// APIKeyTokenSubject is the subject an operator token for req must carry:
// it binds the token to the operation, the name and (create) the hash, so
// a token seen in flight cannot do anything else.
func APIKeyTokenSubject(req *APIKeyRequest) string {
	switch req.Op {
	case "create":
		return "apikey create " + req.Name + " " + req.Hash
	case "revoke":
		return "apikey revoke " + req.Name
	}
	return "apikey " + req.Op
}

// MintAPIKeyToken creates the one-time operator token for req, signed by
// the key of an admin provisioner ("" = AdminProvisioner) of the CA in dir.
func MintAPIKeyToken(dir string, password []byte, provisionerName string, req *APIKeyRequest, opts ...MintOption) (string, error) {
	cfg := newMintConfig(opts)
	settings, err := LoadSettings(dir)
	if err != nil {
		return "", err
	}
	if provisionerName == "" {
		provisionerName = AdminProvisioner
	}
	if p := settings.Provisioners[provisionerName]; p == nil || !p.Admin {
		return "", errorf("provisioner %q may not manage API keys: only an admin provisioner may", provisionerName)
	}
	key, err := provisionerKey(dir, provisionerName, password)
	if err != nil {
		return "", err
	}
	p := &tokenPayload{Subject: APIKeyTokenSubject(req), Audience: []string{settings.CAURL() + APIKeysPath}}
	return signToken(key, provisionerName, p, cfg.clock.Now(), DefaultTokenTTL)
}

func apiKeyInfo(k *store.APIKey) APIKeyInfo {
	return APIKeyInfo{Name: k.Name, Roles: k.Roles, Attributes: k.Attributes, Audience: k.Audience,
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, Provisioner: k.Provisioner}
}

// handleAPIKeys is POST /1.0/apikeys: create, list or revoke API keys with
// a one-time token of an admin provisioner bound to the operation.
func (s *Server) handleAPIKeys(w http.ResponseWriter, r *http.Request, st *serverState) {
	const event = "apikey"
	if s.store == nil {
		s.refuse(w, r, event, http.StatusNotImplemented, errorf("API keys need mcpca's store; this CA runs on step-ca's database"))
		return
	}
	var req APIKeyRequest
	if code, err := readJSON(r, &req); err != nil {
		s.refuse(w, r, event, code, err)
		return
	}
	now := s.cfg.clock.Now()
	switch req.Op {
	case "create", "list", "revoke":
	default:
		s.refuse(w, r, event, http.StatusBadRequest, errorf("unknown API key operation %q: use create, list or revoke", truncateValue(req.Op)))
		return
	}
	var rec store.APIKey
	if req.Op == "create" {
		var err error
		if rec, err = checkAPIKeyRequest(&req, now); err != nil {
			s.refuse(w, r, event, http.StatusBadRequest, err)
			return
		}
	}
	if req.Op != "list" && !apikey.ValidName(req.Name) {
		s.refuse(w, r, event, http.StatusBadRequest, errorf("API key name %q: use 1-64 characters of [a-z0-9._-], starting with a letter or digit", truncateValue(req.Name)))
		return
	}
	prov, code, err := s.checkOperatorToken(st, req.Token, APIKeyTokenSubject(&req), now)
	if err != nil {
		s.refuse(w, r, event, code, err)
		return
	}
	switch req.Op {
	case "create":
		rec.Provisioner = prov
		if err := s.store.CreateAPIKey(rec); err != nil {
			if errors.Is(err, store.ErrAPIKeyExists) {
				s.refuse(w, r, event, http.StatusConflict, errorf("an API key named %q is in force: revoke it first, or choose another name", req.Name))
				return
			}
			s.refuse(w, r, event, http.StatusInternalServerError, err)
			return
		}
		s.cfg.logger.Info("API key created", "event", "apikey_create", "name", rec.Name, "roles", rec.Roles, "attributes", rec.Attributes,
			"audience", rec.Audience, "expires", rec.ExpiresAt.UTC().Format(time.RFC3339), "by", "provisioner:"+prov, "client", r.RemoteAddr)
		writeJSON(w, http.StatusCreated, &APIKeyResponse{Status: "ok", Keys: []APIKeyInfo{apiKeyInfo(&rec)}})
	case "revoke":
		k, err := s.store.RevokeAPIKey(req.Name, now)
		if err != nil {
			if errors.Is(err, store.ErrAPIKeyNotFound) {
				s.refuse(w, r, event, http.StatusNotFound, errorf("no API key named %q is in force", req.Name))
				return
			}
			s.refuse(w, r, event, http.StatusInternalServerError, err)
			return
		}
		s.cfg.logger.Info("API key revoked", "event", "apikey_revoke", "name", k.Name, "by", "provisioner:"+prov, "client", r.RemoteAddr)
		writeJSON(w, http.StatusOK, &APIKeyResponse{Status: "ok", Keys: []APIKeyInfo{apiKeyInfo(k)}})
	case "list":
		keys, err := s.store.APIKeys()
		if err != nil {
			s.refuse(w, r, event, http.StatusInternalServerError, err)
			return
		}
		out := &APIKeyResponse{Status: "ok", Keys: []APIKeyInfo{}}
		for i := range keys {
			out.Keys = append(out.Keys, apiKeyInfo(&keys[i]))
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// checkAPIKeyRequest validates a create request into the record to store.
func checkAPIKeyRequest(req *APIKeyRequest, now time.Time) (store.APIKey, error) {
	if !apikey.ValidName(req.Name) {
		return store.APIKey{}, errorf("API key name %q: use 1-64 characters of [a-z0-9._-], starting with a letter or digit", truncateValue(req.Name))
	}
	if _, err := apikey.DecodeHash(req.Hash); err != nil {
		return store.APIKey{}, errorf("%w", err)
	}
	if err := identity.ValidateRoles(req.Roles); err != nil {
		return store.APIKey{}, err
	}
	if err := identity.ValidateAttributes(req.Attributes); err != nil {
		return store.APIKey{}, err
	}
	if err := apikey.CheckAudience(req.Audience); err != nil {
		return store.APIKey{}, errorf("%w", err)
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl <= 0 || ttl > apikey.MaxTTL {
		return store.APIKey{}, errorf("API key lifetime %q is outside (0, %s]", truncateValue(req.TTL), apikey.MaxTTL)
	}
	return store.APIKey{Name: req.Name, Hash: req.Hash, Roles: req.Roles, Attributes: req.Attributes, Audience: req.Audience,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}, nil
}

// checkOperatorToken verifies a one-time operator token for /1.0/apikeys:
// read strictly (readToken: form, lifetime, audience), the subject bound to
// the request, an admin provisioner's signature, and spent once. It returns
// the provisioner's name.
func (s *Server) checkOperatorToken(st *serverState, tok, subject string, now time.Time) (string, int, error) {
	if tok == "" {
		return "", http.StatusUnauthorized, errorf("missing token: mint one with the CA directory (`mcpca apikey ... --dir`)")
	}
	p, code, err := readToken(st, tok, "apikeys", now)
	if err != nil {
		return "", code, err
	}
	if p.Subject != subject {
		return "", http.StatusForbidden, errorf("the token's subject %q is not this request's %q", truncateValue(p.Subject), truncateValue(subject))
	}
	policy := st.settings.Provisioners[p.Issuer]
	if policy == nil || !policy.Admin {
		return "", http.StatusForbidden, errorf("provisioner %q may not manage API keys: only an admin provisioner may", truncateValue(p.Issuer))
	}
	pi, err := st.auth.LoadProvisionerByName(p.Issuer)
	jwk, ok := pi.(*provisioner.JWK)
	if err != nil || !ok || jwk.Key == nil {
		return "", http.StatusUnauthorized, errorf("token rejected: no JWK provisioner named %q", truncateValue(p.Issuer))
	}
	obj, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(jwk.Key.Algorithm)})
	if err != nil {
		return "", http.StatusUnauthorized, errorf("token rejected: %v", err)
	}
	if _, err := obj.Verify(jwk.Key.Key); err != nil {
		return "", http.StatusUnauthorized, errorf("token rejected: its signature does not verify with provisioner %q's key", p.Issuer)
	}
	if p.NotBefore != nil && now.Add(tokenSkew).Before(time.Unix(*p.NotBefore, 0)) {
		return "", http.StatusUnauthorized, errorf("token rejected: not valid before %s", time.Unix(*p.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	if exp := time.Unix(*p.Expiry, 0); !now.Before(exp.Add(tokenSkew)) {
		return "", http.StatusUnauthorized, errorf("token rejected: it expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if p.ID == "" {
		return "", http.StatusBadRequest, errorf("token has no id (jti)")
	}
	// The store's own UseToken waits for the commit (the server's db
	// claims without waiting, for durableWriter, which these answers skip).
	fresh, err := s.store.UseToken(p.ID, tok)
	if err != nil {
		return "", http.StatusInternalServerError, err
	}
	if !fresh {
		return "", http.StatusUnauthorized, errorf("token rejected: token already used")
	}
	return p.Issuer, 0, nil
}

// signedKeySet is the cached signed set: rebuilt when the store's API keys
// change, and a quarter of its validity after it was signed.
type signedKeySet struct {
	gen     uint64
	rebuild time.Time
	jws     []byte
}

// keySet returns the signed API key set in force.
func (s *Server) keySet(st *serverState, now time.Time) ([]byte, error) {
	gen := s.store.APIKeysGeneration()
	if c := s.keySetCache.Load(); c != nil && c.gen == gen && now.Before(c.rebuild) {
		return c.jws, nil
	}
	s.keySetMu.Lock()
	defer s.keySetMu.Unlock()
	if c := s.keySetCache.Load(); c != nil && c.gen == gen && now.Before(c.rebuild) {
		return c.jws, nil
	}
	keys, err := s.store.APIKeys()
	if err != nil {
		return nil, err
	}
	validity := s.cfg.keySetValidity
	set := &apikey.Set{Issuer: st.settings.CAURL(), IssuedAt: now.Unix(), NextUpdate: now.Add(validity).Unix(), Keys: []apikey.Entry{}}
	for _, k := range keys {
		if k.Active(now) {
			set.Keys = append(set.Keys, apikey.Entry{Name: k.Name, Hash: k.Hash, Roles: k.Roles, Attributes: k.Attributes, Audience: k.Audience, Expires: k.ExpiresAt.Unix()})
		}
	}
	jws, err := apikey.SignSet(set, s.signer.key, s.signer.kid)
	if err != nil {
		return nil, err
	}
	c := &signedKeySet{gen: gen, rebuild: now.Add(validity / 4), jws: []byte(jws + "\n")}
	s.keySetCache.Store(c)
	return c.jws, nil
}

// serveKeySet is GET /1.0/apikeys.
func (s *Server) serveKeySet(w http.ResponseWriter, r *http.Request, st *serverState) {
	if s.store == nil {
		s.refuse(w, r, "apikey_set", http.StatusNotImplemented, errorf("API keys need mcpca's store; this CA runs on step-ca's database"))
		return
	}
	b, err := s.keySet(st, s.cfg.clock.Now())
	if err != nil {
		s.refuse(w, r, "apikey_set", http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/jose")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
