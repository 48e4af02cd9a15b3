// Package e2e holds the end-to-end tests of the library packages against a
// real CA (ca/catest: the embedded step-ca, its store, TLS on loopback).
// They live here, not beside the packages they test, so that a module that
// imports agent or identity/mcpauth never needs the CA's dependencies
// (step-ca) to run `go mod tidy`: the tests of the packages it imports are
// part of its module graph, the tests of this internal package are not.
package e2e
