package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
)

func init() { commands = append(commands, newVerifyCmd) }

func newVerifyCmd() *cobra.Command {
	var (
		root, crl, td, as, arc string
		grace                  time.Duration
		anyTD                  bool
	)
	cmd := &cobra.Command{
		Use:   "verify CERT --root ROOT (--trust-domain TD | --any-trust-domain) [--crl URL|FILE]",
		Short: "Verify a certificate chain as an MCP peer would: chain, identity, revocation",
		Long: `Verify checks CERT (a PEM file: the leaf, then any intermediates) the way an
mcpca verifier checks a TLS peer: the X509-SVID shape, the chain up to a root
of ROOT, validity now, key usage for its role, the trust domain (--trust-domain;
--any-trust-domain accepts any that ROOT signs, and says so), and, with
--crl, revocation against the CA's CRL (a URL such as https://ca:9443/crl, or a
file). It prints the identity and exits 1 with the reason when any check fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if root == "" {
				return errors.New("missing --root (the CA's root certificate; get it with `mcpca bootstrap`)")
			}
			switch {
			case td == "" && !anyTD:
				return errors.New("missing --trust-domain (the trust domain the identity must belong to, e.g. acme.test; --any-trust-domain accepts any that the root signs)")
			case td != "" && anyTD:
				return errors.New("give one of --trust-domain and --any-trust-domain")
			}
			err := runVerify(ctx, cmd.OutOrStdout(), args[0], root, crl, td, as, arc, grace)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%s: verification failed: %w", args[0], err)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "", "PEM file of trusted root certificates (required)")
	f.StringVar(&crl, "crl", "", "CRL to check revocation against: the CA's URL (https://.../crl) or a DER/PEM file")
	f.StringVar(&td, "trust-domain", "", "trust domain the identity must belong to (this or --any-trust-domain is required)")
	f.BoolVar(&anyTD, "any-trust-domain", false, "accept any trust domain the root signs (the output says it was not checked)")
	f.StringVar(&as, "as", "", `role to verify the certificate for, "client" or "server" (default: the kind its SPIFFE ID names)`)
	f.StringVar(&arc, "oid-arc", "", "OID arc of the roles/attributes extensions, if the CA was initialised with --oid-arc")
	f.DurationVar(&grace, "crl-grace", identity.DefaultCRLGrace, "how long past its nextUpdate a CRL is still accepted")
	return cmd
}

func runVerify(ctx context.Context, out io.Writer, certFile, rootFile, crlLoc, td, as, arc string, grace time.Duration) error {
	chain, err := readCertificates(certFile)
	if err != nil {
		return err
	}
	bundle, err := trust.LoadBundleFile(rootFile)
	if err != nil {
		return err
	}
	store := trust.NewBundleStore(bundle)
	opts := []identity.VerifyOption{identity.WithCRLGrace(grace)}
	if td != "" {
		opts = append(opts, identity.WithTrustDomains(td))
	} else {
		opts = append(opts, identity.AnyTrustDomain())
	}
	if arc != "" {
		a, err := identity.ParseOIDArc(arc)
		if err != nil {
			return err
		}
		opts = append(opts, identity.WithOIDs(identity.OIDsFromArc(a)))
	}
	var fetcher *trust.CRLFetcher
	if crlLoc != "" {
		fetcher, err = loadCRL(ctx, crlLoc, store)
		if err != nil {
			return err
		}
		opts = append(opts, identity.WithCRL(fetcher))
	}
	v, err := identity.NewVerifier(store, opts...)
	if err != nil {
		return err
	}
	kind := identity.Kind(as)
	if as == "" {
		kind = identity.KindClient
		if u := chain[0].URIs; len(u) == 1 && strings.HasPrefix(u[0].Path, "/server/") {
			kind = identity.KindServer
		}
	} else if !kind.Valid() {
		return fmt.Errorf("--as %q: want client or server", as)
	}
	id, err := v.Verify(chain, kind)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Chain:       OK (%d presented, verified to a root in %s, usage %s)\n", len(chain), rootFile, kind)
	fmt.Fprintf(out, "SPIFFE ID:   %s\n", id.ID)
	if td == "" {
		fmt.Fprintf(out, "Trust domain: %s (not checked: --any-trust-domain)\n", id.ID.TrustDomain)
	} else {
		fmt.Fprintf(out, "Trust domain: %s (required by --trust-domain)\n", id.ID.TrustDomain)
	}
	fmt.Fprintf(out, "Kind:        %s\n", id.ID.Kind)
	fmt.Fprintf(out, "Roles:       %s\n", strings.Join(id.Roles, ", "))
	keys := make([]string, 0, len(id.Attributes))
	for k := range id.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kv := make([]string, len(keys))
	for i, k := range keys {
		kv[i] = k + "=" + id.Attributes[k]
	}
	fmt.Fprintf(out, "Attributes:  %s\n", strings.Join(kv, ", "))
	if len(id.DNSNames) > 0 {
		fmt.Fprintf(out, "DNS names:   %s\n", strings.Join(id.DNSNames, ", "))
	}
	fmt.Fprintf(out, "Serial:      %s\n", serialText(id.Serial))
	fmt.Fprintf(out, "Not before:  %s\n", id.NotBefore.UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "Not after:   %s\n", id.NotAfter.UTC().Format(time.RFC3339))
	if fetcher == nil {
		fmt.Fprintf(out, "Revocation:  not checked (no --crl)\n")
	} else {
		c, _ := fetcher.CRL()
		num := "none"
		if c.Number() != nil {
			num = c.Number().String()
		}
		fmt.Fprintf(out, "Revocation:  not revoked (CRL number %s from %s, %d revoked, next update %s)\n",
			num, crlLoc, c.Len(), c.NextUpdate().UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "Status:      OK\n")
	return nil
}

// loadCRL loads the CRL at loc (the CA's URL, fetched with the bundle's
// roots, or a DER/PEM file) once. A failed fetch is not an error here: the
// Verifier then reports "revocation status unknown" and refuses.
func loadCRL(ctx context.Context, loc string, store *trust.BundleStore) (*trust.CRLFetcher, error) {
	fetcher, err := trust.NewCRLFetcher(loc, trust.WithHTTPClient(trust.CAHTTPClient(store)), trust.WithBundle(store))
	if err != nil {
		return nil, err
	}
	_ = fetcher.Refresh(ctx)
	return fetcher, nil
}
