package store_test

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smallstep/certificates/db"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/ca/store/storetest"
)

// BenchmarkIssue is the database work of one issuance (a used token and a
// certificate with its provisioner record), from 16 goroutines, durable:
// mcpca's store against step-ca's bbolt driver.
func BenchmarkIssue(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(dir string) (storetest.Full, error)
	}{
		{"store", func(dir string) (storetest.Full, error) { return store.Open(filepath.Join(dir, "s.db")) }},
		// As the CA uses it: the token claimed, made durable by the
		// certificate's commit.
		{"store-claim", func(dir string) (storetest.Full, error) {
			s, err := store.Open(filepath.Join(dir, "s.db"))
			return claiming{s}, err
		}},
		{"step-ca", func(dir string) (storetest.Full, error) {
			d, err := db.New(&db.Config{Type: "bbolt", DataSource: filepath.Join(dir, "ca.db")})
			if err != nil {
				return nil, err
			}
			return d.(storetest.Full), nil
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := tc.open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Shutdown()
			tmpl := storetest.Cert(b)
			prov := storetest.Prov("ops")
			exp := token(time.Now().Add(5 * time.Minute))
			var n atomic.Int64
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if ok, err := s.UseToken(fmt.Sprint("tok-", i), exp); err != nil || !ok {
						b.Errorf("UseToken = %v, %v", ok, err)
						return
					}
					c := &x509.Certificate{Raw: tmpl.Raw, SerialNumber: big.NewInt(i)}
					if err := s.StoreCertificateChain(prov, c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
		})
	}
}

type claiming struct{ *store.Store }

func (c claiming) UseToken(id, tok string) (bool, error) { return c.ClaimToken(id, tok) }
