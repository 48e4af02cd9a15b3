package ca_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

// Beyond --max-in-flight the CA sheds at once: 503 with Retry-After and a
// message that names the limit, read by the client as APIError.RetryAfter;
// reads (the roots, the CRL) are never shed; and once the request in flight
// ends, the next one is served.
func TestCAShedsBeyondMaxInFlight(t *testing.T) {
	c := catest.Start(t, catest.Options{CAOptions: []ca.Option{ca.WithMaxInFlight(1)}})
	// One request holds the only slot: its body never arrives.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Roots}}}
	start := func() (*io.PipeWriter, chan error) {
		body, hold := io.Pipe()
		req, err := http.NewRequest(http.MethodPost, c.URL+"/1.0/sign", body)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		// A first byte of the body makes the client send the request
		// (HTTP/1.1 may hold its headers in a buffer until the body
		// starts); the handler then waits for the rest.
		go func() { _, _ = hold.Write([]byte("{")) }()
		return hold, done
	}
	hold, held := start()
	t.Cleanup(func() { hold.Close(); <-held })
	sent := time.Now()
	resend := func() {
		hold.Close()
		<-held
		hold, held = start()
		sent = time.Now()
	}

	var shed *caclient.APIError
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for shed == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the CA never shed a request while one was in flight (the last revoke: %v)", last)
		}
		select {
		case err := <-held:
			// The held request ended: a revoke below had the slot and the
			// CA shed the held one. Send it again.
			held <- err
			resend()
			continue
		default:
		}
		last = c.Client.Revoke(context.Background(), "1", "not-a-token", "")
		var ae *caclient.APIError
		switch {
		case errors.As(last, &ae) && ae.Status == http.StatusServiceUnavailable:
			shed = ae
		case time.Since(sent) > time.Second:
			// The revoke was admitted, so the slot was free a second after
			// the held request was sent: it never took it (about one run
			// in 25 here; why is not known: it neither ended nor reached
			// admission within the 30 s deadline). Send it again.
			resend()
		}
	}
	want := "ca: the CA is at its limit of 1 requests in flight (serve --max-in-flight): retry after 1 s"
	if shed.Message != want || shed.RetryAfter != time.Second {
		t.Fatalf("shed with %q, retry after %v; want %q, 1s", shed.Message, shed.RetryAfter, want)
	}
	if _, err := c.Client.Roots(context.Background()); err != nil {
		t.Fatalf("reading the roots while at the limit: %v", err)
	}

	hold.CloseWithError(errors.New("released"))
	<-held
	held <- nil // for the cleanup
	for {
		if time.Now().After(deadline) {
			t.Fatal("the CA kept shedding after the request in flight ended")
		}
		cert, err := c.EnrollToken(c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "after", TTL: time.Hour}))
		var ae *caclient.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
			continue
		}
		if err != nil || !strings.HasSuffix(cert.Leaf.URIs[0].String(), "/client/after") {
			t.Fatalf("enrolling after the release: %v", err)
		}
		break
	}
}
