package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"

	"github.com/mcpca/mcpca/identity"
)

// File is one policy document: Name (usually the file path) locates errors
// and names policies without an @id.
type File struct {
	Name string
	Data []byte
}

// Info describes one loaded policy.
type Info struct {
	ID     string
	File   string
	Line   int
	Column int
	Permit bool
}

// Set is a validated, indexed, immutable policy set. It is safe for
// concurrent use.
type Set struct {
	files    []string
	cfg      *config
	policies []policyEntry
	cedar    *cedar.PolicySet
	idx      *index
	fc       filterCache
}

type policyEntry struct {
	id     types.PolicyID
	policy *cedar.Policy
	info   Info
}

// Load reads and compiles policy files. A path that is a directory stands
// for the *.cedar files in it, in name order.
func Load(paths []string, opts ...Option) (*Set, error) {
	srcs, _, err := readSources(paths)
	if err != nil {
		return nil, err
	}
	return compile(srcs, newConfig(opts))
}

// readSources reads the files paths name (directories: their *.cedar files)
// and digests their names and contents.
func readSources(paths []string) ([]File, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	var files []string
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			files = append(files, p)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(p, "*.cedar"))
		if err != nil {
			return nil, sum, errorf("listing policy directory: %w", err)
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	h := sha256.New()
	srcs := make([]File, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, sum, errorf("reading policy file: %w", err)
		}
		var n [16]byte
		binary.LittleEndian.PutUint64(n[:8], uint64(len(f)))
		binary.LittleEndian.PutUint64(n[8:], uint64(len(data)))
		h.Write(n[:])
		h.Write([]byte(f))
		h.Write(data)
		srcs = append(srcs, File{Name: f, Data: data})
	}
	h.Sum(sum[:0])
	return srcs, sum, nil
}

// Compile parses and validates the sources into a Set. It reports every
// problem it finds, each a *LoadError located at file:line:column, joined
// with errors.Join: syntax errors, unknown entity types, unknown actions,
// unknown attributes, principals or resources that can never match, and
// duplicate policy IDs.
func Compile(srcs []File, opts ...Option) (*Set, error) {
	return compile(srcs, newConfig(opts))
}

func compile(srcs []File, cfg *config) (*Set, error) {
	s := &Set{cfg: cfg, cedar: cedar.NewPolicySet()}
	var errs []error
	seen := map[types.PolicyID]bool{}
	for _, src := range srcs {
		s.files = append(s.files, src.Name)
		if err := checkBounds(src); err != nil {
			errs = append(errs, err)
			continue
		}
		list, err := cedar.NewPolicyListFromBytes(src.Name, src.Data)
		if err != nil {
			errs = append(errs, syntaxError(src.Name, src.Data, err))
			continue
		}
		starts := make([]int, len(list))
		for i, p := range list {
			starts[i] = p.Position().Offset
		}
		for i, p := range list {
			pos := p.Position()
			end := len(src.Data)
			if i+1 < len(starts) && starts[i+1] > pos.Offset {
				end = starts[i+1]
			}
			v := validator{cfg: cfg, file: src.Name, data: src.Data, start: pos.Offset, end: end, pos: pos}
			v.policy((*xast.Policy)(p.AST()))
			errs = append(errs, v.errs...)

			id := types.PolicyID(fmt.Sprintf("%s:%d", src.Name, pos.Line))
			if a, ok := p.Annotations()["id"]; ok {
				id = types.PolicyID(a)
				if a == "" {
					errs = append(errs, &LoadError{File: src.Name, Line: pos.Line, Column: pos.Column, Msg: "empty policy id: @id needs a name"})
					continue
				}
				if seen[id] {
					errs = append(errs, &LoadError{File: src.Name, Line: pos.Line, Column: pos.Column, Msg: fmt.Sprintf("duplicate policy id %q", a)})
					continue
				}
			} else if seen[id] {
				// Several policies on one line, or a file given twice.
				id = types.PolicyID(fmt.Sprintf("%s:%d:%d", src.Name, pos.Line, pos.Column))
				for n := 2; seen[id]; n++ {
					id = types.PolicyID(fmt.Sprintf("%s:%d:%d#%d", src.Name, pos.Line, pos.Column, n))
				}
			}
			seen[id] = true
			s.cedar.Add(id, p)
			s.policies = append(s.policies, policyEntry{id: id, policy: p, info: Info{
				ID: string(id), File: src.Name, Line: pos.Line, Column: pos.Column, Permit: p.Effect() == cedar.Permit,
			}})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.idx = buildIndex(s.policies)
	return s, nil
}

// Policies describes the loaded policies in file order.
func (s *Set) Policies() []Info {
	out := make([]Info, len(s.policies))
	for i, p := range s.policies {
		out[i] = p.info
	}
	return out
}

// Files returns the names of the sources the set was compiled from, in order.
func (s *Set) Files() []string { return append([]string(nil), s.files...) }

// Len returns the number of policies.
func (s *Set) Len() int { return len(s.policies) }

// Bounds on a policy source, so that a runaway file cannot exhaust memory or
// the parser's stack.
const (
	MaxSourceBytes = 4 << 20 // bytes per policy file
	MaxNesting     = 256     // depth of (), [] and {} outside strings and comments
)

// checkBounds enforces MaxSourceBytes and MaxNesting.
func checkBounds(src File) error {
	if len(src.Data) > MaxSourceBytes {
		return &LoadError{File: src.Name, Line: 1, Column: 1, Msg: fmt.Sprintf("policy file is %d bytes, the limit is %d", len(src.Data), MaxSourceBytes)}
	}
	depth, inString, escaped, inComment := 0, false, false, false
	for i, c := range src.Data {
		switch {
		case inComment:
			inComment = c != '\n'
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '/' && i+1 < len(src.Data) && src.Data[i+1] == '/':
			inComment = true
		case c == '(' || c == '[' || c == '{':
			if depth++; depth > MaxNesting {
				line, col := position(src.Data, i)
				return &LoadError{File: src.Name, Line: line, Column: col, Msg: fmt.Sprintf("nesting deeper than %d levels", MaxNesting)}
			}
		case c == ')' || c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

var parseErrRE = regexp.MustCompile(`<input>:(\d+):(\d+):? (?:"((?:[^"\\]|\\.)*)": )?(.*)$`)
var exactRE = regexp.MustCompile(`^exact got (.*) want (.*)$`)

// syntaxError turns a cedar-go parse error into a located LoadError.
func syntaxError(file string, data []byte, err error) error {
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, n := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		line, col := position(data, off)
		return &LoadError{File: file, Line: line, Column: col, Msg: "syntax error: invalid UTF-8"}
	}
	m := parseErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &LoadError{File: file, Line: 1, Column: 1, Msg: "syntax error: " + err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	line, col = max(line, 1), max(col, 1)
	msg := m[4]
	if e := exactRE.FindStringSubmatch(msg); e != nil {
		got := strconv.Quote(e[1])
		if e[1] == "" {
			got = "end of input"
		}
		msg = fmt.Sprintf("expected %q, got %s", e[2], got)
	}
	return &LoadError{File: file, Line: line, Column: col, Msg: "syntax error: " + msg}
}

// validator checks one policy against the entity model.
type validator struct {
	cfg        *config
	file       string
	data       []byte
	start, end int // the policy's bytes within data
	pos        types.Position
	resType    types.EntityType // the resource type the scope fixes, if any
	errs       []error
}

func (v *validator) errorAt(needle, format string, args ...any) {
	line, col := v.pos.Line, v.pos.Column
	if needle != "" && v.start >= 0 && v.end <= len(v.data) && v.start <= v.end {
		if i := bytes.Index(v.data[v.start:v.end], []byte(needle)); i >= 0 {
			line, col = position(v.data, v.start+i)
		}
	}
	v.errs = append(v.errs, &LoadError{File: v.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

// position returns the 1-based line and column (in characters) of off.
func position(data []byte, off int) (line, col int) {
	line = 1 + bytes.Count(data[:off], []byte("\n"))
	lineStart := bytes.LastIndexByte(data[:off], '\n') + 1
	return line, 1 + utf8.RuneCount(data[lineStart:off])
}

var (
	principalTypes = []types.EntityType{TypeClient, TypeServer}
	groupTypes     = []types.EntityType{TypeClient, TypeServer, TypeRole, TypeTrustDomain}
	resourceTypes  = []types.EntityType{TypeTool, TypeResource, TypePrompt, TypeServer}
	knownTypes     = []types.EntityType{TypeClient, TypeServer, TypeRole, TypeTrustDomain, TypeAction, TypeTool, TypeResource, TypePrompt}
)

func (v *validator) policy(p *xast.Policy) {
	switch s := p.Principal.(type) {
	case xast.ScopeTypeEq:
		v.scopeEntity("principal ==", s.Entity, principalTypes)
	case xast.ScopeTypeIn:
		v.scopeEntity("principal in", s.Entity, groupTypes)
	case xast.ScopeTypeIs:
		v.scopeType("principal is", s.Type, principalTypes)
	case xast.ScopeTypeIsIn:
		v.scopeType("principal is", s.Type, principalTypes)
		v.scopeEntity("principal in", s.Entity, groupTypes)
	}
	switch s := p.Action.(type) {
	case xast.ScopeTypeEq:
		v.scopeEntity("action ==", s.Entity, []types.EntityType{TypeAction})
	case xast.ScopeTypeIn:
		v.scopeEntity("action in", s.Entity, []types.EntityType{TypeAction})
	case xast.ScopeTypeInSet:
		for _, e := range s.Entities {
			v.scopeEntity("action in", e, []types.EntityType{TypeAction})
		}
	}
	switch s := p.Resource.(type) {
	case xast.ScopeTypeEq:
		v.scopeEntity("resource ==", s.Entity, resourceTypes)
		v.resType = s.Entity.Type
	case xast.ScopeTypeIn:
		v.scopeEntity("resource in", s.Entity, resourceTypes)
		v.resType = s.Entity.Type
	case xast.ScopeTypeIs:
		v.scopeType("resource is", s.Type, resourceTypes)
		v.resType = s.Type
	case xast.ScopeTypeIsIn:
		v.scopeType("resource is", s.Type, resourceTypes)
		v.scopeEntity("resource in", s.Entity, resourceTypes)
		v.resType = s.Type
	}
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), v.node)
	}
}

func (v *validator) scopeType(what string, t types.EntityType, allowed []types.EntityType) {
	if !v.knownType(t) {
		return
	}
	if !slices.Contains(allowed, t) {
		v.errorAt(string(t), "%s %s never matches: expected one of %s", what, t, typeList(allowed))
	}
}

func (v *validator) scopeEntity(what string, uid types.EntityUID, allowed []types.EntityType) {
	if !v.uid(uid) {
		return
	}
	if !slices.Contains(allowed, uid.Type) {
		v.errorAt(string(uid.Type), "%s %s never matches: expected an entity of type %s", what, uidString(uid), typeList(allowed))
		return
	}
	self := uid.Type == TypeServer && uid.ID == SelfID
	switch {
	case strings.HasPrefix(what, "principal") && self:
		v.errorAt(strconv.Quote(SelfID), "%s %s never matches: Mcp::Server::\"self\" is the resource of methods without a target, never a principal", what, uidString(uid))
	case strings.HasPrefix(what, "resource") && uid.Type == TypeServer && !self:
		v.errorAt(strconv.Quote(string(uid.ID)), "%s %s never matches: the only Mcp::Server resource is Mcp::Server::\"self\"", what, uidString(uid))
	}
}

// knownType reports (and records an error for) an unknown entity type.
func (v *validator) knownType(t types.EntityType) bool {
	if slices.Contains(knownTypes, t) {
		return true
	}
	v.errorAt(string(t), "unknown entity type %s: expected one of %s", t, typeList(knownTypes))
	return false
}

// uid checks an entity literal: known type, known action, well-formed
// principal ID. It reports whether the literal is usable.
func (v *validator) uid(uid types.EntityUID) bool {
	if !v.knownType(uid.Type) {
		return false
	}
	switch uid.Type {
	case TypeAction:
		if AlwaysAllowed(string(uid.ID)) {
			v.errorAt(strconv.Quote(string(uid.ID)), "action %s is always allowed: initialize, ping and notifications cannot be restricted by policy", uidString(uid))
			return false
		}
		if !v.cfg.actions[string(uid.ID)] {
			v.errorAt(strconv.Quote(string(uid.ID)), "unknown action %s: expected an MCP method such as \"tools/call\", \"resources/read\" or \"prompts/get\"", uidString(uid))
			return false
		}
	case TypeClient, TypeServer:
		if uid.Type == TypeServer && string(uid.ID) == SelfID {
			return true
		}
		id, err := identity.ParseID(string(uid.ID))
		want := identity.KindClient
		if uid.Type == TypeServer {
			want = identity.KindServer
		}
		if err != nil || id.Kind != want {
			v.errorAt(strconv.Quote(string(uid.ID)), "%s never matches: the ID of a %s is spiffe://<trust-domain>/%s/<name>", uidString(uid), uid.Type, want)
			return false
		}
	}
	return true
}

func (v *validator) value(val types.Value) {
	switch val := val.(type) {
	case types.EntityUID:
		v.uid(val)
	case types.Set:
		for e := range val.All() {
			v.value(e)
		}
	case types.Record:
		for _, e := range val.All() {
			v.value(e)
		}
	}
}

func (v *validator) node(n xast.IsNode) bool {
	switch n := n.(type) {
	case xast.NodeValue:
		v.value(n.Value)
	case xast.NodeTypeIs:
		v.knownType(n.EntityType)
	case xast.NodeTypeIsIn:
		v.knownType(n.EntityType)
	case xast.NodeTypeAccess:
		if vr, ok := n.Arg.(xast.NodeTypeVariable); ok {
			v.access(string(vr.Name), string(n.Value))
		}
	case xast.NodeTypeHasTag:
		v.errorAt("hasTag", "mcpca entities have no tags: read certificate attributes as principal.attrs.<key>")
	case xast.NodeTypeGetTag:
		v.errorAt("getTag", "mcpca entities have no tags: read certificate attributes as principal.attrs.<key>")
	}
	return true
}

func (v *validator) access(variable, attr string) {
	var known []string
	switch variable {
	case "principal":
		known = principalAttrs
	case "resource":
		known = resourceAttrs
		if v.resType != "" {
			known = attrsOf(v.resType)
			if !slices.Contains(known, attr) {
				has := "no attributes"
				if len(known) > 0 {
					has = "only " + list(known)
				}
				v.errorAt("."+attr, "unknown attribute resource.%s: the resource is a %s, which has %s", attr, v.resType, has)
				return
			}
		}
	case "context":
		known = contextAttrs
		if attr == "args" {
			if !v.cfg.toolArgs {
				v.errorAt(".args", "context.args is not available: tool arguments reach policies only when enabled (policy.WithToolArguments)")
			}
			return
		}
	case "action":
		v.errorAt("action.", "actions have no attributes (action.%s)", attr)
		return
	default:
		return
	}
	if !slices.Contains(known, attr) {
		v.errorAt("."+attr, "unknown attribute %s.%s: %s has %s", variable, attr, variable, list(known))
	}
}

func uidString(uid types.EntityUID) string {
	return string(uid.Type) + "::" + strconv.Quote(string(uid.ID))
}

func typeList(ts []types.EntityType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return list(s)
}

func list(s []string) string {
	s = slices.Clone(s)
	sort.Strings(s)
	out := ""
	for i, e := range s {
		if i > 0 {
			out += ", "
		}
		out += e
	}
	return out
}
