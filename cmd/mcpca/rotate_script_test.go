package main

import (
	"regexp"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// caLog waits until the log of a script's CA has a line matching a
// regexp (a switch it makes on its own clock, which no signal announces).
func caLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: ca-log [DIR] REGEXP")
	}
	dir := "pki"
	if len(args) == 2 {
		dir, args = args[0], args[1:]
	}
	re, err := regexp.Compile(args[0])
	ts.Check(err)
	st := ts.Value(caKey{}).(map[string]*caState)[dir]
	if st == nil {
		ts.Fatalf("ca-log: no ca-serve of %s before", dir)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(st.logs.String(), "\n") {
			if re.MatchString(line) {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("the CA's log has no line matching %s: %s", args[0], st.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
