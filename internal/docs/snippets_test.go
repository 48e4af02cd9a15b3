package docs

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const root = "../.."

// snippet is one ```go block of a markdown file.
type snippet struct {
	file  string
	line  int
	lines []string
}

func markdownSnippets(t *testing.T) []snippet {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	files = append(files, filepath.Join(root, "README.md"), filepath.Join(root, "SECURITY.md"))
	var out []snippet
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *snippet
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for n := 1; sc.Scan(); n++ {
			l := sc.Text()
			switch {
			case cur == nil && strings.TrimSpace(l) == "```go":
				rel, _ := filepath.Rel(root, f)
				cur = &snippet{file: rel, line: n}
			case cur != nil && strings.TrimSpace(l) == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cur.lines = append(cur.lines, l)
			}
		}
	}
	return out
}

// code returns the line without its trailing // comment and spaces, "" for
// a comment-only or blank line.
func code(l string) string {
	var quote byte
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case quote != 0 && c == '\\' && quote == '"':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '`'):
			quote = c
		case quote == 0 && c == '/' && i+1 < len(l) && l[i+1] == '/':
			l = l[:i]
		}
	}
	return strings.Join(strings.Fields(l), " ")
}

// examples returns the source of every Example function's body in the
// repository, normalised line by line with code.
func examples(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, p, src, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Example") || fn.Body == nil {
				continue
			}
			body := string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
			var lines []string
			for _, l := range strings.Split(body, "\n") {
				if c := code(l); c != "" {
					lines = append(lines, c)
				}
			}
			rel, _ := filepath.Rel(root, p)
			out[rel+":"+fn.Name.Name] = lines
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// contains reports whether want appears in have in order (not necessarily
// adjacent: a snippet may leave out lines of its example).
func contains(have, want []string) bool {
	i := 0
	for _, h := range have {
		if i < len(want) && h == want[i] {
			i++
		}
	}
	return i == len(want)
}

// Every Go snippet of the docs is the code of an Example function, in
// order: it compiles, and it runs where the example has an Output.
func TestSnippetsComeFromExamples(t *testing.T) {
	exs := examples(t)
	snips := markdownSnippets(t)
	if len(snips) == 0 {
		t.Fatal("no Go snippet found in the docs: is the test reading the right files?")
	}
	for _, s := range snips {
		var want []string
		for _, l := range s.lines {
			if c := code(l); c != "" {
				want = append(want, c)
			}
		}
		found := ""
		for name, have := range exs {
			if contains(have, want) {
				found = name
				break
			}
		}
		if found == "" {
			t.Errorf("%s:%d: this Go snippet is not the code of any Example function; take it from one (lines compared without comments):\n%s", s.file, s.line, strings.Join(want, "\n"))
		}
	}
}
