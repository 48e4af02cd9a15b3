package agenterr

import (
	"errors"
	"io/fs"
	"testing"
)

type apiError struct{}

func (apiError) Error() string { return "the CA answered 401: no" }

func TestErrorfPrefixesOnceAndKeepsTheChain(t *testing.T) {
	inner := Errorf("renewing: %w", apiError{})
	outer := Errorf("identity %q: %w", "web", inner)
	if got, want := outer.Error(), `agent: identity "web": renewing: the CA answered 401: no`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	var ae apiError
	if !errors.As(outer, &ae) {
		t.Fatal("errors.As lost the inner error")
	}
	if got, want := Errorf("x: %v", Errorf("y")).Error(), "agent: x: y"; got != want {
		t.Fatalf("%%v: got %q, want %q", got, want)
	}
	plain := Errorf("hook 1: %w", Inner(Errorf("reading: %w", fs.ErrNotExist)))
	if got, want := plain.Error(), "agent: hook 1: reading: file does not exist"; got != want || !errors.Is(plain, fs.ErrNotExist) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if err := Inner(fs.ErrNotExist); err != fs.ErrNotExist {
		t.Fatalf("Inner of a foreign error: %v", err)
	}
}
