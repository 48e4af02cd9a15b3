// Package certname names a certificate in an error message, the same way
// in every package that refuses one.
package certname

import (
	"crypto/x509"
	"fmt"
)

// Of names c: its URI SAN (its SPIFFE ID), its quoted common name, or its
// serial.
func Of(c *x509.Certificate) string {
	if c == nil {
		return "a nil certificate"
	}
	if len(c.URIs) == 1 {
		return c.URIs[0].String()
	}
	if cn := c.Subject.CommonName; cn != "" {
		const max = 64
		if len(cn) > max {
			cn = cn[:max] + "..."
		}
		return fmt.Sprintf("certificate %q", cn)
	}
	return "certificate with serial " + c.SerialNumber.Text(16)
}
