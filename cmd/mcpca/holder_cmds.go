package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/atomicfile"
	"github.com/mcpca/mcpca/internal/caclient"
	"github.com/mcpca/mcpca/internal/pemfile"
)

func init() {
	commands = append(commands, newEnrollCmd, newBootstrapCmd, newRenewCmd, newRevokeCmd, newInspectCmd)
}

type caFlags struct{ url, root string }

// add adds --ca-url and --root to cmd: required, or (fromDir) defaulting to
// the CA directory's when the command has --dir.
func (c *caFlags) add(cmd *cobra.Command, fromDir bool) {
	urlHelp, rootHelp := "URL of the CA, e.g. https://127.0.0.1:9443", "root certificate of the CA (PEM)"
	if fromDir {
		cmd.Flags().StringVar(&c.url, "ca-url", "", urlHelp+" (default from --dir)")
		cmd.Flags().StringVar(&c.root, "root", "", rootHelp+" (default from --dir)")
		return
	}
	// Required. --root is not marked: its own check (loadRoots) says where
	// to get the root (mcpca bootstrap), as verify's does.
	cmd.Flags().StringVar(&c.url, "ca-url", "", urlHelp+" (required)")
	cmd.Flags().StringVar(&c.root, "root", "", rootHelp+" (required)")
	_ = cmd.MarkFlagRequired("ca-url")
}

func newEnrollCmd() *cobra.Command {
	var (
		cf                                      caFlags
		token, tokenFile, certFile, keyFile, kt string
	)
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Redeem a one-time token: generate a key locally and get its certificate",
		Long: `Redeem a one-time token. The key is generated here (P-256 by default) and never
leaves the host; the certificate file holds the leaf and the intermediate;
the key is written 0600. Both are written atomically.`,
		Example: `  mcpca enroll --token "$TOKEN" --ca-url https://127.0.0.1:9443 --root ./pki/certs/root_ca.crt \
               --cert reporter.crt --key reporter.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokenFile != "" {
				var err error
				if token, err = readToken(cmd.ErrOrStderr(), tokenFile); err != nil {
					return err
				}
			}
			if token == "" {
				return errors.New("missing --token (or --token-file)")
			}
			if certFile == "" || keyFile == "" {
				return errors.New("missing --cert or --key (where to write the certificate and the key)")
			}
			// The agent's enrol-and-sink path: the destination is checked
			// before the token is spent, and the key and chain are written
			// as one step (both or neither).
			sink := &agent.FileSink{CertFile: certFile, KeyFile: keyFile}
			if err := sink.CheckWritable(); err != nil {
				return err // before anything else: nothing is fetched for a path that cannot be written
			}
			pool, _, err := loadRoots(cf.root)
			if err != nil {
				return err
			}
			if err := checkCAURL(cf.url); err != nil {
				return err
			}
			key, err := generateKey(kt)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			client := &agent.CAClient{CAURL: cf.url, TrustRoots: func() *x509.CertPool { return pool }}
			snap, err := sink.Enroll(ctx, client, token, key)
			if err != nil {
				return caError(err)
			}
			chain := snap.Chain()
			fmt.Fprintf(cmd.ErrOrStderr(), "Enrolled %s (serial %s, valid until %s)\n  certificate: %s\n  key:         %s (0600)\n",
				subjectOf(chain[0]), serialText(chain[0].SerialNumber), chain[0].NotAfter.UTC().Format(time.RFC3339), certFile, keyFile)
			return nil
		},
	}
	cf.add(cmd, false)
	f := cmd.Flags()
	f.StringVar(&token, "token", "", "one-time token from mcpca token (this or --token-file is required)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the token (instead of --token)")
	f.StringVar(&certFile, "cert", "", "where to write the certificate chain (PEM) (required)")
	f.StringVar(&keyFile, "key", "", "where to write the private key (PEM, 0600) (required)")
	f.StringVar(&kt, "key-type", "p256", "key type: p256, p384, ed25519 or rsa2048")
	cmd.MarkFlagsOneRequired("token", "token-file")
	cmd.MarkFlagsMutuallyExclusive("token", "token-file")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newBootstrapCmd() *cobra.Command {
	var caURL, fp, out string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Fetch the CA's root certificate, trusting it only if its fingerprint matches",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caURL == "" || fp == "" || out == "" {
				return errors.New("need --ca-url, --fingerprint and --out")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			root, err := caclient.Bootstrap(ctx, caURL, fp)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(out, pemfile.EncodeCertificates(root), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote the root %q (fingerprint %s) to %s\n", root.Subject.CommonName, strings.ToLower(fp), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caURL, "ca-url", "", "URL of the CA (required)")
	f.StringVar(&fp, "fingerprint", "", "SHA-256 fingerprint of the root, as printed by mcpca init (required)")
	f.StringVar(&out, "out", "root_ca.crt", "where to write the root certificate")
	_ = cmd.MarkFlagRequired("ca-url")
	_ = cmd.MarkFlagRequired("fingerprint")
	return cmd
}

func newRenewCmd() *cobra.Command {
	var cf caFlags
	var certFile, keyFile string
	cmd := &cobra.Command{
		Use:   "renew",
		Short: "Renew a certificate over mTLS (same identity, roles and attributes) and replace the file atomically",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pair, err := loadPair(certFile, keyFile)
			if err != nil {
				return err
			}
			cl, err := newClient(cf.url, cf.root)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			chain, err := cl.Renew(ctx, pair)
			if err != nil {
				return err
			}
			if err := writeChain(certFile, chain); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Renewed %s: serial %s, valid until %s\n", subjectOf(chain[0]), serialText(chain[0].SerialNumber), chain[0].NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cf.add(cmd, false)
	cmd.Flags().StringVar(&certFile, "cert", "", "certificate chain to renew; replaced atomically (required)")
	cmd.Flags().StringVar(&keyFile, "key", "", "its private key (required)")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newRevokeCmd() *cobra.Command {
	var (
		cf                                           caFlags
		certFile, keyFile, serial, dir, pwFile, prov string
		reason, ident                                string
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a certificate (as its holder: --cert/--key; as the operator: --serial) or a whole identity (--identity)",
		Long: `Revoke a certificate through the running CA, which regenerates its CRL.
As the holder, present the certificate and its key (--cert, --key).
As the operator, name the serial (decimal, as printed by enroll and inspect,
or hex with 0x, as audit logs and policies show it without the 0x)
and the CA directory: a one-time revocation token is minted with the
provisioner's key. A revoked certificate can no longer renew, and the
certificates renewed from it are revoked with it (unless the reason code is
superseded).

--identity SPIFFE-ID revokes every unexpired certificate of that identity at
once (a restricted --provisioner only within its names): none of them renews
again, and enrolment tokens for it minted before now are refused. Enrolling
it again with a new token brings the identity back.`,
		Example: `  mcpca revoke --cert reporter.crt --key reporter.key --ca-url https://127.0.0.1:9443 --root root_ca.crt
  mcpca revoke --serial 1234567890 --dir ./pki --ca-url https://127.0.0.1:9443 --reason "left the team"
  mcpca revoke --identity spiffe://acme.test/client/reporter --dir ./pki --reason "key compromise"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cf.root == "" && dir != "" {
				cf.root = ca.Layout{Dir: dir}.RootCert()
			}
			if cf.url == "" && dir != "" {
				if s, err := ca.LoadSettings(dir); err == nil {
					cf.url = s.CAURL()
				}
			}
			cl, err := newClient(cf.url, cf.root)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			switch {
			case countSet(serial, certFile, ident) > 1:
				return errors.New("give one of --serial or --identity (operator) or --cert/--key (holder)")
			case ident != "":
				if dir == "" {
					return errors.New("--identity needs --dir (the CA directory, for the provisioner key)")
				}
				id, err := identity.ParseID(ident)
				if err != nil {
					return fmt.Errorf("--identity: %w", err)
				}
				pw, err := readPassword(cmd.ErrOrStderr(), pwFile, dir)
				if err != nil {
					return err
				}
				tok, err := ca.MintRevokeToken(dir, pw, prov, id.String())
				if err != nil {
					return err
				}
				serials, err := cl.RevokeIdentity(ctx, id.String(), tok, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Revoked identity %s: %d certificate(s)\n", id, len(serials))
				for _, sn := range serials {
					if n, ok := new(big.Int).SetString(sn, 10); ok {
						fmt.Fprintf(cmd.OutOrStdout(), "%s\n", serialText(n))
					}
				}
			case serial != "":
				if dir == "" {
					return errors.New("--serial needs --dir (the CA directory, for the provisioner key)")
				}
				n, err := parseSerial(serial)
				if err != nil {
					return err
				}
				serial = n.String() // the CA's API takes decimal
				pw, err := readPassword(cmd.ErrOrStderr(), pwFile, dir)
				if err != nil {
					return err
				}
				tok, err := ca.MintRevokeToken(dir, pw, prov, serial)
				if err != nil {
					return err
				}
				if err := cl.Revoke(ctx, serial, tok, reason); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Revoked serial %s\n", serialText(n))
			default:
				pair, err := loadPair(certFile, keyFile)
				if err != nil {
					return err
				}
				if err := cl.RevokeSelf(ctx, pair, reason); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Revoked %s (serial %s)\n", subjectOf(pair.Leaf), serialText(pair.Leaf.SerialNumber))
			}
			return nil
		},
	}
	cf.add(cmd, true)
	f := cmd.Flags()
	f.StringVar(&certFile, "cert", "", "certificate to revoke (holder)")
	f.StringVar(&keyFile, "key", "", "its private key (holder)")
	f.StringVar(&serial, "serial", "", "serial number to revoke: decimal, or hex with 0x (operator)")
	f.StringVar(&ident, "identity", "", "SPIFFE ID whose every certificate to revoke (operator)")
	f.StringVar(&dir, "dir", "", "CA directory (operator)")
	f.StringVar(&pwFile, "password-file", "", "file holding the CA password, or the --provisioner's own password (operator; default <dir>/secrets/password)")
	f.StringVar(&prov, "provisioner", ca.AdminProvisioner, "provisioner whose key signs the revocation token (operator)")
	f.StringVar(&reason, "reason", "", "reason for the revocation")
	// One of --serial, --identity or --cert (with --key) is required. That
	// they exclude one another is RunE's check, whose message names the
	// roles (operator, holder).
	cmd.MarkFlagsOneRequired("serial", "identity", "cert")
	cmd.MarkFlagsRequiredTogether("cert", "key")
	return cmd
}

// inspectOutput is the --json shape of `mcpca inspect`.
type inspectOutput struct {
	SPIFFEID    string            `json:"spiffe_id"`
	TrustDomain string            `json:"trust_domain"`
	Kind        string            `json:"kind"`
	Name        string            `json:"name"`
	Roles       []string          `json:"roles"`
	Attributes  map[string]string `json:"attributes"`
	Serial      string            `json:"serial"`     // decimal
	SerialHex   string            `json:"serial_hex"` // as audit logs and policies show it
	NotBefore   time.Time         `json:"not_before"`
	NotAfter    time.Time         `json:"not_after"`
	Remaining   string            `json:"remaining"`
	Expired     bool              `json:"expired"`
	Issuer      string            `json:"issuer"`
	DNSNames    []string          `json:"dns_names,omitempty"`
	IPAddresses []string          `json:"ip_addresses,omitempty"`
	Fingerprint string            `json:"sha256_fingerprint"`
}

func newInspectCmd() *cobra.Command {
	var asJSON bool
	var arc string
	cmd := &cobra.Command{
		Use:   "inspect CERT",
		Short: "Show the identity a certificate carries: SPIFFE ID, roles, attributes, validity",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			certs, err := readCertificates(args[0])
			if err != nil {
				return err
			}
			opts, err := oidOptions(arc)
			if err != nil {
				return err
			}
			id, err := identity.FromCertificate(certs[0], opts...)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			now := time.Now()
			sum := sha256.Sum256(certs[0].Raw)
			o := inspectOutput{
				SPIFFEID: id.ID.String(), TrustDomain: id.ID.TrustDomain, Kind: string(id.ID.Kind), Name: id.ID.Name,
				Roles: id.Roles, Attributes: id.Attributes, Serial: id.Serial.String(), SerialHex: id.SerialHex(),
				NotBefore: id.NotBefore.UTC(), NotAfter: id.NotAfter.UTC(),
				Remaining: id.NotAfter.Sub(now).Truncate(time.Second).String(), Expired: now.After(id.NotAfter),
				Issuer: certs[0].Issuer.CommonName, DNSNames: id.DNSNames, Fingerprint: hex.EncodeToString(sum[:]),
			}
			if o.Roles == nil {
				o.Roles = []string{}
			}
			for _, ip := range id.IPAddresses {
				o.IPAddresses = append(o.IPAddresses, ip.String())
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(o)
			}
			fmt.Fprintf(out, "SPIFFE ID:   %s\n", o.SPIFFEID)
			fmt.Fprintf(out, "Kind:        %s\n", o.Kind)
			fmt.Fprintf(out, "Roles:       %s\n", strings.Join(o.Roles, ", "))
			keys := make([]string, 0, len(o.Attributes))
			for k := range o.Attributes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+o.Attributes[k])
			}
			fmt.Fprintf(out, "Attributes:  %s\n", strings.Join(kv, ", "))
			if len(o.DNSNames) > 0 || len(o.IPAddresses) > 0 {
				fmt.Fprintf(out, "DNS/IP:      %s\n", strings.Join(append(append([]string{}, o.DNSNames...), o.IPAddresses...), ", "))
			}
			fmt.Fprintf(out, "Serial:      %s\n", serialText(id.Serial))
			fmt.Fprintf(out, "Valid:       %s to %s\n", o.NotBefore.Format(time.RFC3339), o.NotAfter.Format(time.RFC3339))
			if o.Expired {
				fmt.Fprintf(out, "Remaining:   expired\n")
			} else {
				fmt.Fprintf(out, "Remaining:   %s\n", o.Remaining)
			}
			fmt.Fprintf(out, "Issuer:      %s\n", o.Issuer)
			fmt.Fprintf(out, "Fingerprint: %s\n", o.Fingerprint)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&arc, "oid-arc", "", "OID arc of the CA's extensions, if not the default")
	return cmd
}

// subjectOf names a certificate by its SPIFFE ID, or its subject.
func subjectOf(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return c.Subject.String()
}

// countSet returns how many of the values are not empty.
func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}
