package identity

import (
	"encoding/asn1"
	"strconv"
	"strings"
)

// DefaultOIDArc is the object identifier arc under which mcpca places its two
// certificate extensions when no other arc is configured:
//
//	roles      <arc>.1   SEQUENCE OF UTF8String
//	attributes <arc>.2   SEQUENCE OF SEQUENCE { key UTF8String, value UTF8String }
//
// The arc sits under the IANA private-enterprise arc (1.3.6.1.4.1) but the
// enterprise number 99999 is NOT registered to this project. Organisations that
// own a private enterprise number should use their own arc (mcpca init
// --oid-arc, and WithOIDs on the verifier side) so their OIDs are globally
// unique.
var DefaultOIDArc = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}

// OIDs names the two extensions of the identity contract.
type OIDs struct {
	Roles      asn1.ObjectIdentifier
	Attributes asn1.ObjectIdentifier
}

// DefaultOIDs are the extension OIDs under DefaultOIDArc.
var DefaultOIDs = OIDsFromArc(DefaultOIDArc)

// OIDsFromArc returns the roles (<arc>.1) and attributes (<arc>.2) OIDs.
func OIDsFromArc(arc asn1.ObjectIdentifier) OIDs {
	roles := append(append(asn1.ObjectIdentifier{}, arc...), 1)
	attrs := append(append(asn1.ObjectIdentifier{}, arc...), 2)
	return OIDs{Roles: roles, Attributes: attrs}
}

// ParseOIDArc parses a dotted arc such as "1.3.6.1.4.1.99999.1". Every arc
// component must fit in 31 bits, the limit of Go's x509 parser.
func ParseOIDArc(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, errorf("invalid OID arc %q: need at least two components", s)
	}
	arc := make(asn1.ObjectIdentifier, 0, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 31)
		if err != nil || p == "" || (len(p) > 1 && p[0] == '0') {
			return nil, errorf("invalid OID arc %q: component %d (%q) is not a decimal number below 2^31", s, i+1, p)
		}
		arc = append(arc, int(n))
	}
	if arc[0] > 2 || (arc[0] < 2 && arc[1] > 39) {
		return nil, errorf("invalid OID arc %q: first components out of range", s)
	}
	return arc, nil
}
