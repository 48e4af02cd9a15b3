package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs the CLI scripts of testdata/script (testscript's txtar
// format, as age's CLI tests): the built mcpca binary on PATH, each script
// in a fresh directory, asserting exit codes, stdout and stderr.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", filepath.Dir(mcpcaBin)+string(os.PathListSeparator)+env.Getenv("PATH"))
			return nil
		},
	})
}
