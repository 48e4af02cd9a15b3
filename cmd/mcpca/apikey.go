package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/apikey"
)

func init() { commands = append(commands, newAPIKeyCmd) }

// apiKeyFlags are the operator flags every apikey command takes.
type apiKeyFlags struct {
	cf                caFlags
	dir, pwFile, prov string
}

func (a *apiKeyFlags) add(cmd *cobra.Command) {
	a.cf.add(cmd, true)
	f := cmd.Flags()
	f.StringVar(&a.dir, "dir", "", "CA directory (required: the admin provisioner's key signs the request)")
	f.StringVar(&a.pwFile, "password-file", "", "file holding the CA password (default <dir>/secrets/password)")
	f.StringVar(&a.prov, "provisioner", ca.AdminProvisioner, "admin provisioner whose key signs the request")
	_ = cmd.MarkFlagRequired("dir")
}

// do mints the one-time token for req and posts it to the running CA.
func (a *apiKeyFlags) do(cmd *cobra.Command, req *ca.APIKeyRequest) (*ca.APIKeyResponse, error) {
	if a.cf.root == "" {
		a.cf.root = ca.Layout{Dir: a.dir}.RootCert()
	}
	if a.cf.url == "" {
		if s, err := ca.LoadSettings(a.dir); err == nil {
			a.cf.url = s.CAURL()
		}
	}
	cl, err := newClient(a.cf.url, a.cf.root)
	if err != nil {
		return nil, err
	}
	pw, err := readPassword(cmd.ErrOrStderr(), a.pwFile, a.dir)
	if err != nil {
		return nil, err
	}
	tok, err := ca.MintAPIKeyToken(a.dir, pw, a.prov, req)
	if err != nil {
		return nil, err
	}
	req.Token = tok
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	var resp ca.APIKeyResponse
	if err := cl.APIKeys(ctx, req, &resp); err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("cannot reach the CA at %s: is `mcpca serve --dir %s` running? API keys are managed through it (%w)", a.cf.url, a.dir, err)
		}
		return nil, caError(err)
	}
	return &resp, nil
}

func newAPIKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apikey",
		Short: "Manage API keys (create, list, revoke) through the running CA",
		Long: `Manage API keys for clients that can send only a header
(Authorization: Bearer mcpca_ak_...). The CA keeps only each key's SHA-256
and serves the keys in force as a signed key set (GET /1.0/apikeys) that
servers fetch and check locally. The commands work while mcpca serve runs:
they sign each request with the admin provisioner's key from --dir.`,
	}
	cmd.AddCommand(newAPIKeyCreateCmd(), newAPIKeyListCmd(), newAPIKeyRevokeCmd())
	return cmd
}

func newAPIKeyCreateCmd() *cobra.Command {
	var (
		af           apiKeyFlags
		roles, attrs []string
		ttl          time.Duration
		audience     string
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an API key; it is printed once, on stdout",
		Long: `Create an API key. The key is generated here (32 random bytes) and printed
once on stdout: only its SHA-256 reaches the CA. It stands for NAME with the
roles and attributes given, is accepted only by the server whose resource
URL is --audience, and expires after --ttl (at most 8784h).`,
		Example: `  KEY=$(mcpca apikey create ci-bot --dir ./pki --role reader --attr team=payments \
        --audience https://mcp.example.com/mcp --ttl 720h)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !apikey.ValidName(name) {
				return fmt.Errorf("API key name %q: use 1-64 characters of [a-z0-9._-], starting with a letter or digit", name)
			}
			if ttl <= 0 || ttl > apikey.MaxTTL {
				return fmt.Errorf("--ttl %s is outside (0, %s]", ttl, apikey.MaxTTL)
			}
			if err := apikey.CheckAudience(audience); err != nil {
				return fmt.Errorf("--audience: %w", err)
			}
			if err := identity.ValidateRoles(roles); err != nil {
				return err
			}
			var am map[string]string
			if len(attrs) > 0 {
				am = map[string]string{}
				for _, a := range attrs {
					k, v, ok := strings.Cut(a, "=")
					if !ok {
						return fmt.Errorf("--attr %q: want key=value", a)
					}
					if _, dup := am[k]; dup {
						return fmt.Errorf("--attr %q: attribute %q given twice", a, k)
					}
					am[k] = v
				}
				if err := identity.ValidateAttributes(am); err != nil {
					return err
				}
			}
			key, hash, err := apikey.Generate()
			if err != nil {
				return err
			}
			req := &ca.APIKeyRequest{Op: "create", Name: name, Hash: apikey.EncodeHash(hash), Roles: roles, Attributes: am,
				Audience: audience, TTL: ttl.String()}
			resp, err := af.do(cmd, req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			if len(resp.Keys) == 1 {
				k := resp.Keys[0]
				fmt.Fprintf(cmd.ErrOrStderr(), "Created API key %q (roles: %s; audience %s; expires %s). It is shown once: store it now.\n",
					k.Name, listOr(k.Roles, "none"), k.Audience, k.ExpiresAt.UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
	af.add(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&roles, "role", nil, "role the key grants (repeatable)")
	f.StringArrayVar(&attrs, "attr", nil, "attribute key=value the key carries (repeatable)")
	f.DurationVar(&ttl, "ttl", 720*time.Hour, "lifetime of the key (at most 8784h)")
	f.StringVar(&audience, "audience", "", "resource URL of the server that accepts the key, e.g. https://mcp.example.com/mcp (required)")
	_ = cmd.MarkFlagRequired("audience")
	return cmd
}

func newAPIKeyListCmd() *cobra.Command {
	var (
		af     apiKeyFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the API keys: names, roles, audience, expiry (never a key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := af.do(cmd, &ca.APIKeyRequest{Op: "list"})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(resp.Keys)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLES\tATTRIBUTES\tAUDIENCE\tEXPIRES\tSTATUS")
			for _, k := range resp.Keys {
				status := "active"
				switch {
				case !k.RevokedAt.IsZero():
					status = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
				case !now.Before(k.ExpiresAt):
					status = "expired"
				}
				var attrs []string
				for a, v := range k.Attributes {
					attrs = append(attrs, a+"="+v)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, listOr(k.Roles, "-"), listOr(sortedCopy(attrs), "-"), k.Audience,
					k.ExpiresAt.UTC().Format(time.RFC3339), status)
			}
			return tw.Flush()
		},
	}
	af.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAPIKeyRevokeCmd() *cobra.Command {
	var af apiKeyFlags
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an API key: servers refuse it within the key set's refresh bound",
		Long: `Revoke an API key. The CA drops it from its signed key set at once; a
server refuses it at its next refresh of the set (every 15s by default), and
in every case once the set it holds expires (60s after the CA signed it).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := af.do(cmd, &ca.APIKeyRequest{Op: "revoke", Name: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Revoked API key %q\n", args[0])
			return nil
		},
	}
	af.add(cmd)
	return cmd
}

func listOr(l []string, none string) string {
	if len(l) == 0 {
		return none
	}
	return strings.Join(l, ",")
}

func sortedCopy(l []string) []string {
	out := append([]string(nil), l...)
	slices.Sort(out)
	return out
}
