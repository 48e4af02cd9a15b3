package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
)

func init() { commands = append(commands, newPolicyCmd) }

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check Cedar policy files and explain their decisions",
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyExplainCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	var toolArgs, strict bool
	cmd := &cobra.Command{
		Use:   "check FILE|DIR...",
		Short: "Validate Cedar policy files against the mcpca entity model",
		Long: `Check parses every FILE and validates each policy against the mcpca entity
model: entity types (Mcp::Client, Mcp::Server, Mcp::Role, Mcp::TrustDomain,
Mcp::Action, Mcp::Tool, Mcp::Resource, Mcp::Prompt), actions (MCP method
names), and the attributes of principal, resource and context. A DIR stands
for the *.cedar files in it. It prints every problem as FILE:LINE:COL: MESSAGE
and exits 1 if there is any.

It then warns (FILE:LINE:COL of the policy: warning: ...) about every read of
an attribute that may be absent and is not guarded by has: a certificate
attribute (principal.attrs.NAME), a tool argument (context.args.NAME), a
resource's uri or name when the scope does not fix its type. Such a permit
is skipped and such a forbid denies when the attribute is missing. With
--strict, warnings exit 1 too.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []policy.Option
			if toolArgs {
				opts = append(opts, policy.WithToolArguments())
			}
			set, err := policy.Load(args, opts...)
			if err != nil {
				n := printPolicyErrors(cmd.ErrOrStderr(), err)
				return &exitError{code: 1, err: fmt.Errorf("policy check failed: %d %s", n, plural(n, "error", "errors"))}
			}
			warnings := set.Lint()
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), w.String())
			}
			if strict && len(warnings) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("policy check failed: %d %s (--strict)", len(warnings), plural(len(warnings), "warning", "warnings"))}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %d %s in %d %s", set.Len(), plural(set.Len(), "policy", "policies"), len(set.Files()), plural(len(set.Files()), "file", "files"))
			if len(warnings) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), ", %d %s", len(warnings), plural(len(warnings), "warning", "warnings"))
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&toolArgs, "tool-args", false, "allow policies to read context.args (the server passes tool arguments)")
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 when there are warnings (attribute reads not guarded by has)")
	return cmd
}

// printPolicyErrors prints load errors as FILE:LINE:COL: MESSAGE lines, the
// form editors jump to, and returns how many there were.
func printPolicyErrors(w io.Writer, err error) int {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var le *policy.LoadError
		if errors.As(e, &le) {
			fmt.Fprintf(w, "%s:%d:%d: %s\n", le.File, le.Line, le.Column, le.Msg)
		} else {
			fmt.Fprintln(w, e)
		}
	}
	return len(errs)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func newPolicyExplainCmd() *cobra.Command {
	var (
		certFile, arc, at, source, tz string
		tokenFile, tokenTD            string
		policies, tools, resources    []string
		prompts, methods              []string
		toolArgs                      bool
	)
	cmd := &cobra.Command{
		Use:   "explain (--cert CERT | --token FILE) --policy FILE [--tool NAME]... [--resource URI]... [--prompt NAME]... [--method METHOD]...",
		Short: "Show what a certificate's or token's holder may do under a policy, and which policies decide",
		Long: `Explain reads the identity in CERT (roles and attributes included), or the one
an OAuth access token (a JWT) in FILE maps to, and decides,
under the policy files, each request: tools/call for every --tool,
resources/read for every --resource, prompts/get for every --prompt, and the
bare METHOD (e.g. tools/list) for every --method. For each it prints allow or
deny and the policies that determined it. --at and --source set the request
time and source address that conditions such as business hours see.

With --token the principal is what the token's claims map to (docs/oauth.md:
sub, roles/groups/scope, attrs), in the trust domain of --token-trust-domain
(default: the host of its iss), and context.auth is "token", or
"bound-token" for a token bound to a certificate (cnf.x5t#S256), as a server
sees it presented with that certificate. The token's signature, audience and
expiry are NOT checked: explain says what a token would be allowed, the
server decides whether it is valid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (certFile == "") == (tokenFile == "") || len(policies) == 0 {
				return errors.New("policy explain needs --cert or --token (one of them) and at least one --policy")
			}
			if len(tools)+len(resources)+len(prompts)+len(methods) == 0 {
				return errors.New("nothing to explain: pass --tool, --resource, --prompt or --method")
			}
			var ident *identity.Identity
			how := policy.AuthMTLS
			var err error
			if certFile != "" {
				if ident, err = readIdentity(certFile, arc); err != nil {
					return err
				}
			} else {
				if ident, how, err = readTokenIdentity(tokenFile, tokenTD, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			opts := []policy.Option{}
			if toolArgs {
				opts = append(opts, policy.WithToolArguments())
			}
			if tz != "" {
				loc, err := time.LoadLocation(tz)
				if err != nil {
					return fmt.Errorf("--time-zone: %w", err)
				}
				opts = append(opts, policy.WithTimeZone(loc))
			}
			base := policy.Request{Time: time.Now()}
			if at != "" {
				if base.Time, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at: want an RFC 3339 time such as 2026-03-04T10:30:00Z: %w", err)
				}
			}
			if source != "" {
				if base.Source, err = netip.ParseAddr(source); err != nil {
					return fmt.Errorf("--source: %w", err)
				}
			}
			set, err := policy.Load(policies, opts...)
			if err != nil {
				printPolicyErrors(cmd.ErrOrStderr(), err)
				return &exitError{code: 1, err: errors.New("the policy files do not check; fix them first (see mcpca policy check)")}
			}
			var reqs []policy.Request
			add := func(method string, targets []string) {
				for _, t := range targets {
					r := base
					r.Method, r.Target = method, t
					reqs = append(reqs, r)
				}
			}
			add("tools/call", tools)
			add("resources/read", resources)
			add("prompts/get", prompts)
			for _, m := range methods {
				r := base
				r.Method = m
				reqs = append(reqs, r)
			}
			explain(cmd.OutOrStdout(), set, policy.NewPrincipalFor(ident, how), reqs)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&certFile, "cert", "", "PEM certificate whose identity to explain")
	f.StringVar(&tokenFile, "token", "", "a file holding an OAuth access token (JWT) whose identity to explain, instead of --cert (its signature is not checked)")
	f.StringVar(&tokenTD, "token-trust-domain", "", "with --token: the trust domain its issuer speaks for (default: the host of its iss)")
	f.StringArrayVar(&policies, "policy", nil, "Cedar policy file or directory of *.cedar files (repeatable; required)")
	f.StringArrayVar(&tools, "tool", nil, "tool name to decide tools/call for (repeatable)")
	f.StringArrayVar(&resources, "resource", nil, "resource URI to decide resources/read for (repeatable)")
	f.StringArrayVar(&prompts, "prompt", nil, "prompt name to decide prompts/get for (repeatable)")
	f.StringArrayVar(&methods, "method", nil, "method without a target to decide, e.g. tools/list (repeatable)")
	f.StringVar(&at, "at", "", "request time, RFC 3339 (default: now)")
	f.StringVar(&source, "source", "", "request source IP address (default: unknown)")
	f.StringVar(&tz, "time-zone", "", "IANA time zone of context.hour and context.weekday (default: UTC)")
	f.StringVar(&arc, "oid-arc", "", "OID arc of the roles/attributes extensions, if the CA was initialised with --oid-arc")
	f.BoolVar(&toolArgs, "tool-args", false, "allow policies to read context.args")
	return cmd
}

// readIdentity parses the identity in the first certificate of a PEM file.
func readIdentity(file, arc string) (*identity.Identity, error) {
	certs, err := readCertificates(file)
	if err != nil {
		return nil, err
	}
	opts, err := oidOptions(arc)
	if err != nil {
		return nil, err
	}
	ident, err := identity.FromCertificate(certs[0], opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return ident, nil
}

// readTokenIdentity maps the claims of the access token in file (not
// verified) to the identity and method a server would see.
func readTokenIdentity(file, td string, warn io.Writer) (*identity.Identity, policy.AuthMethod, error) {
	tok, err := readBearerToken(file, warn)
	if err != nil {
		return nil, "", err
	}
	t, err := oauth.Inspect(tok, oauth.Issuer{TrustDomain: td})
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", file, err)
	}
	if t.Thumbprint != nil {
		return t.Identity, policy.AuthBoundToken, nil
	}
	return t.Identity, policy.AuthToken, nil
}

// explain prints the principal and one line per decision.
func explain(w io.Writer, set *policy.Set, p *policy.Principal, reqs []policy.Request) {
	ident := p.Identity()
	fmt.Fprintf(w, "Principal:  %s::%q\n", p.UID().Type, string(p.UID().ID))
	fmt.Fprintf(w, "Auth:       %s\n", p.Auth())
	roles := "(none)"
	if len(ident.Roles) > 0 {
		roles = strings.Join(ident.Roles, ", ")
	}
	fmt.Fprintf(w, "Roles:      %s\n", roles)
	keys := make([]string, 0, len(ident.Attributes))
	for k := range ident.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]string, len(keys))
	for i, k := range keys {
		attrs[i] = k + "=" + ident.Attributes[k]
	}
	if len(attrs) == 0 {
		attrs = []string{"(none)"}
	}
	fmt.Fprintf(w, "Attributes: %s\n\n", strings.Join(attrs, ", "))
	where := map[string]string{}
	for _, info := range set.Policies() {
		where[info.ID] = fmt.Sprintf("%s:%d:%d", info.File, info.Line, info.Column)
	}
	for _, r := range reqs {
		d := set.Authorize(p, r)
		what := r.Method
		if r.Target != "" {
			what += " " + r.Target
		}
		fmt.Fprintf(w, "%-5s  %s\n", d, what)
		switch {
		case len(d.Policies) == 0:
			fmt.Fprintf(w, "       %s\n", d.Reason)
		default:
			verb := "permitted by"
			if !d.Allow {
				verb = "forbidden by"
			}
			for _, id := range d.Policies {
				loc := where[id]
				if loc == id || strings.HasPrefix(loc, id+":") {
					fmt.Fprintf(w, "       %s %s\n", verb, loc)
				} else {
					fmt.Fprintf(w, "       %s %s (%s)\n", verb, id, loc)
				}
			}
		}
		for _, e := range d.Errors {
			fmt.Fprintf(w, "       skipped, evaluation error in %s\n", e)
		}
	}
}
