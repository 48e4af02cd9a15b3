package gatewaycmd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`node server.js stdio`:                {"node", "server.js", "stdio"},
		"  node\tserver.js \n stdio  ":        {"node", "server.js", "stdio"},
		`node "my server.js" stdio`:           {"node", "my server.js", "stdio"},
		`node 'my server.js'`:                 {"node", "my server.js"},
		`node my\ server.js`:                  {"node", "my server.js"},
		`a "" ''`:                             {"a", "", ""},
		`a b"c d"e'f g'h`:                     {"a", "bc def gh"},
		`a "q\"uo\\te\$\x"`:                   {"a", `q"uo\te$\x`},
		`a 'it'\''s' "it's"`:                  {"a", "it's", "it's"},
		`a '$HOME | x; y > z' "#" \# a#b`:     {"a", "$HOME | x; y > z", "#", "#", "a#b"},
		"a \\\nb \"c\\\nd\"":                  {"a", "b", "cd"},
		`python3 -c 'print("hi there")'`:      {"python3", "-c", `print("hi there")`},
		`npx -y @scope/pkg@1.2.3 --flag=*.js`: {"npx", "-y", "@scope/pkg@1.2.3", "--flag=*.js"},
	} {
		got, err := splitCommand(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// Every refusal says what is wrong and how to write it.
func TestSplitCommandRefusals(t *testing.T) {
	for in, want := range map[string]string{
		``:                  "it names no program",
		"  \t ":             "it names no program",
		`node 'server.js`:   "the single quote at byte 6 is never closed",
		`node "server.js`:   "the double quote at byte 6 is never closed",
		`node "a\"`:         "the double quote at byte 6 is never closed",
		`node server.js \`:  `it ends with a lone backslash: write \\ for a backslash`,
		`node s.js | tee x`: `'|' is shell syntax, and the command runs without a shell: quote it ('|') to pass it as an argument`,
		`node s.js > log`:   `'>' is shell syntax, and the command runs without a shell: quote it ('>') to pass it as an argument`,
		`node $HOME/s.js`:   `'$' is shell syntax, and the command runs without a shell: quote it ('$') to pass it as an argument`,
		`node "$HOME/s.js"`: `'$' inside double quotes would be expanded by a shell, and the command runs without one: put it in single quotes to pass it as it is`,
		"node \"`id`\"":     "'`' inside double quotes would be expanded by a shell, and the command runs without one: put it in single quotes to pass it as it is",
		`node s.js # note`:  `"#" would start a comment in a shell: quote it ('#') to pass it as an argument`,
		`a; b`:              `';' is shell syntax, and the command runs without a shell: quote it (';') to pass it as an argument`,
	} {
		if got, err := splitCommand(in); err == nil || err.Error() != want {
			t.Errorf("splitCommand(%q) = %q, %v; want the error %q", in, got, err, want)
		}
	}
}

// quoteWord is w in single quotes, as a shell (and splitCommand) reads it.
func quoteWord(w string) string { return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'" }

// FuzzSplitCommand: never panics; what it splits, quoted word by word and
// split again, gives the same words; and any words quoted so are read back.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{`node server.js stdio`, `a "b c" 'd e' f\ g`, `a 'it'\''s'`, `"\\\"\$"`, "a \\\nb", `'`, `"`, `\`, `a#b #c`, "\"\\\n\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := splitCommand(s)
		// Without quotes, backslashes or shell syntax, the words are the
		// shell's: the fields between blanks.
		if plain := strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./_=:,+@% \t-"); plain == "" && strings.TrimSpace(s) != "" {
			if want := strings.Fields(s); err != nil || !slices.Equal(words, want) {
				t.Fatalf("%q: %q, %v; a shell reads %q", s, words, err, want)
			}
		}
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("an empty error for %q", s)
			}
			// s itself, as one quoted word, is always read back.
			if got, err := splitCommand(quoteWord(s)); err != nil || len(got) != 1 || got[0] != s {
				t.Fatalf("%q quoted: %q, %v", s, got, err)
			}
			return
		}
		if len(words) == 0 {
			t.Fatalf("no words and no error for %q", s)
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = quoteWord(w)
		}
		again, err := splitCommand(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("%q: %q, quoted and split again %q, %v", s, words, again, err)
		}
	})
}

// upstream_cmd in --config: a list of words, or one string split as
// --upstream-cmd is.
func TestRoutesCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte("routes:\n"+
		"  - path: /a/mcp\n    upstream_cmd: [node, \"my server.js\", stdio]\n    policy: a.cedar\n"+
		"  - path: /b/mcp\n    upstream_cmd: node 'my server.js' --name \"b c\"\n    policy: b.cedar\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	routes, err := loadRoutes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := []string(routes[0].UpstreamCmd), []string(routes[1].UpstreamCmd); !slices.Equal(a, []string{"node", "my server.js", "stdio"}) ||
		!slices.Equal(b, []string{"node", "my server.js", "--name", "b c"}) {
		t.Fatalf("commands %q and %q", a, b)
	}
	for content, want := range map[string]string{
		"routes:\n  - path: /a\n    upstream_cmd: node 'x\n    policy: a\n": "--config " + cfg + ": line 3: upstream_cmd: the single quote at byte 6 is never closed",
		"routes:\n  - path: /a\n    upstream_cmd: {a: b}\n    policy: a\n":  "--config " + cfg + ": yaml: unmarshal errors:\n  line 3: cannot unmarshal !!map into []string",
		"routes:\n  - path: /a\n    upstream_cmd: \"\"\n    policy: a\n":    "--config " + cfg + ": line 3: upstream_cmd: it names no program",
	} {
		if err := os.WriteFile(cfg, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadRoutes(cfg); err == nil || err.Error() != want {
			t.Errorf("%q: %v; want %q", content, err, want)
		}
	}
}
