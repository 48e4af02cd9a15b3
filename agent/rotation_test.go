package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/agenttest"
)

// Clients hammer an mTLS server whose certificate comes from a Source while
// the server's and the clients' sources both rotate 100 times: not one
// handshake may fail.
func TestRotationUnderLoadZeroFailedHandshakes(t *testing.T) {
	const rotations = 100
	const clients = 4
	ca := newTestCA(t)
	start := time.Now().Truncate(time.Second)
	fk := clock.NewFake(start)
	// Every certificate is valid from 100h before its issue to 200h after,
	// and due for renewal 30m after its issue. The fake clock jumps 30m per
	// rotation, 50h in all, so a handshake that a busy machine stalls
	// across several rotations still sees valid certificates: what is
	// tested is the swap, not the validity window.
	const before, after = 100 * time.Hour, 200 * time.Hour
	renewAt := float64(before+30*time.Minute) / float64(before+after)
	issue := func(name string, pub crypto.PublicKey, key crypto.Signer) tls.Certificate {
		n := fk.Now()
		return tlsCert(ca.Issue(name, pub, n.Add(-before), n.Add(after)), key)
	}
	renew := RenewerFunc(func(_ context.Context, cur tls.Certificate) (tls.Certificate, error) {
		return issue(cur.Leaf.Subject.CommonName, cur.Leaf.PublicKey, cur.PrivateKey.(crypto.Signer)), nil
	})
	sk, ck := agenttest.NewKey(t), agenttest.NewKey(t)
	serverArmed, clientArmed := newArmed(), newArmed()
	server, err := NewSource(issue("server", sk.Public(), sk), renew, WithClock(fk),
		WithRenewAt(renewAt), WithJitter(0), WithLogger(quiet), serverArmed.option())
	if err != nil {
		t.Fatal(err)
	}
	client, err := NewSource(issue("client", ck.Public(), ck), renew, WithClock(fk),
		WithRenewAt(renewAt), WithJitter(0), WithLogger(quiet), clientArmed.option(), WithRoots(ca.Roots()))
	if err != nil {
		t.Fatal(err)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: server.GetCertificate,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      ca.Pool(),
		Time:           fk.Now,
		MinVersion:     tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	var serverErrs atomic.Int64
	var serving sync.WaitGroup
	serving.Add(1)
	go func() {
		defer serving.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serving.Add(1)
			go func() {
				defer serving.Done()
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					serverErrs.Add(1)
					t.Errorf("server handshake: %v", err)
					return
				}
				c.Write([]byte{1})
			}()
		}
	}()

	runSource(t, server)
	runSource(t, client)
	due := later(serverArmed.next(t), clientArmed.next(t))

	var handshakes, failures atomic.Int64
	var latest atomic.Pointer[string]
	seen := make(chan struct{}, 1)
	stop := make(chan struct{})
	var hammering sync.WaitGroup
	for i := 0; i < clients; i++ {
		hammering.Add(1)
		go func() {
			defer hammering.Done()
			cfg := &tls.Config{
				GetClientCertificate: client.GetClientCertificate,
				RootCAs:              client.RootPool(),
				ServerName:           "localhost",
				Time:                 fk.Now,
				MinVersion:           tls.VersionTLS13,
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
				if err == nil {
					_, err = io.ReadFull(conn, make([]byte, 1))
					if err == nil {
						s := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
						latest.Store(&s)
						select {
						case seen <- struct{}{}:
						default:
						}
					}
					conn.Close()
				}
				handshakes.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("client handshake: %v", err)
				}
			}
		}()
	}

	distinct := map[string]bool{}
	for i := 0; i < rotations; i++ {
		h0 := handshakes.Load()
		fk.Set(due)
		due = later(serverArmed.next(t), clientArmed.next(t))
		// Wait until clients have handshaken with the new certificate,
		// and a few more times, while the next rotation comes.
		want := server.Current().Leaf().SerialNumber.Text(16)
		for {
			if s := latest.Load(); s != nil && *s == want && handshakes.Load()-h0 >= 2*clients {
				break
			}
			select {
			case <-seen:
			case <-time.After(30 * time.Second):
				t.Fatalf("rotation %d: no handshake with the new certificate", i+1)
			}
		}
		distinct[want] = true
	}
	close(stop)
	hammering.Wait()
	ln.Close()
	serving.Wait()

	if got := server.Status().Renewals; got != rotations {
		t.Fatalf("server rotated %d times", got)
	}
	if got := client.Status().Renewals; got != rotations {
		t.Fatalf("client rotated %d times", got)
	}
	if failures.Load() != 0 || serverErrs.Load() != 0 {
		t.Fatalf("%d of %d handshakes failed (server side: %d)", failures.Load(), handshakes.Load(), serverErrs.Load())
	}
	if len(distinct) != rotations {
		t.Fatalf("clients saw %d server certificates", len(distinct))
	}
	t.Logf("%d handshakes across %d rotations, none failed", handshakes.Load(), rotations)
}
