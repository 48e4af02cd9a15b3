package store_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/mcpca/mcpca/ca/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "store-example-")
	defer os.RemoveAll(dir)
	s, err := store.Open(filepath.Join(dir, "db", "mcpca.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	first, _ := s.UseToken("token-id", "header.payload.signature")
	again, _ := s.UseToken("token-id", "header.payload.signature")
	fmt.Println("first use accepted:", first)
	fmt.Println("replay accepted:", again)
	if err := s.Shutdown(); err != nil {
		fmt.Println(err)
	}
	_, err = s.IsRevoked("1")
	fmt.Println(err)
	// Output:
	// first use accepted: true
	// replay accepted: false
	// store: closed
}
