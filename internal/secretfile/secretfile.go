// Package secretfile reads the small secret files the command line takes
// (passwords, enrolment tokens) and says when one is readable by group or
// others, so one helper words the warning for every command.
package secretfile

import (
	"fmt"
	"io"
	"os"
)

// Exposure describes how file is exposed, e.g. "pki/secrets/pw is readable
// by group/others (mode 0644): chmod 600 it", or returns "" when only its
// owner can read it (or it cannot be examined).
func Exposure(file string) string {
	st, err := os.Stat(file)
	if err != nil || st.IsDir() {
		return ""
	}
	if m := st.Mode().Perm(); m&0o044 != 0 {
		return fmt.Sprintf("%s is readable by group/others (mode %04o): chmod 600 it", file, m)
	}
	return ""
}

// Read reads file, first writing "mcpca: warning: <Exposure>" to warn when
// group or others can read it.
func Read(file string, warn io.Writer) ([]byte, error) {
	if e := Exposure(file); e != "" && warn != nil {
		fmt.Fprintf(warn, "mcpca: warning: %s\n", e)
	}
	return os.ReadFile(file)
}
