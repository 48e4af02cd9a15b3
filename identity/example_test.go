package identity_test

import (
	"fmt"

	"github.com/mcpca/mcpca/identity"
)

// The roles and attributes extensions are plain DER; the CA encodes them and
// every verifier decodes them with the same codec.
func Example_codec() {
	roles, _ := identity.EncodeRoles([]string{"reader", "search.admin"})
	attrs, _ := identity.EncodeAttributes(map[string]string{"team": "search", "env": "prod"})
	fmt.Printf("roles extension: % x\n", roles)

	gotRoles, _ := identity.DecodeRoles(roles)
	gotAttrs, _ := identity.DecodeAttributes(attrs)
	fmt.Println(gotRoles, gotAttrs)

	_, err := identity.EncodeRoles([]string{"Admin"})
	fmt.Println(err)
	// Output:
	// roles extension: 30 16 0c 06 72 65 61 64 65 72 0c 0c 73 65 61 72 63 68 2e 61 64 6d 69 6e
	// [reader search.admin] map[env:prod team:search]
	// identity: invalid role "Admin": roles are 1-64 characters of [a-z0-9_.-]: out of bounds
}

func ExampleParseID() {
	id, err := identity.ParseID("spiffe://example.org/client/alice")
	if err != nil {
		panic(err)
	}
	fmt.Println(id.TrustDomain, id.Kind, id.Name)
	_, err = identity.ParseID("spiffe://example.org/robot/r2")
	fmt.Println(err)
	// Output:
	// example.org client alice
	// identity: invalid kind "robot": must be "client" or "server"
}
