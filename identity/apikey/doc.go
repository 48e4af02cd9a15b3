// Package apikey is mcpca's API keys for clients that can send only a
// header (Authorization: Bearer mcpca_ak_...): their format, the CA's
// signed key set, and a Verifier that checks keys against that set with no
// call to the CA per request.
//
// A key is Prefix, 32 random bytes in base64url and a 6-character checksum
// (Check). The CA (`mcpca apikey create`) stores only its SHA-256 (Hash)
// with a name, roles, attributes, one audience and an expiry, and serves
// the keys in force as a JWS signed by its token signing key (Set,
// ParseSet), which a Verifier fetches every refresh interval as it would a
// CRL. A verified Key carries what a Cedar principal needs: the name, the
// roles, the attributes.
package apikey
