package gatewaycmd

import (
	"errors"
	"fmt"
	"strings"
)

// splitCommand splits s into the words of a command as a POSIX shell
// would, without running one and without expanding anything: words are
// separated by blanks (space, tab, newline); 'single quotes' keep
// everything up to the next single quote; "double quotes" keep everything
// but a backslash before one of \ " and newline; outside quotes a
// backslash keeps the next character (before a newline it joins lines).
// What a shell would expand or interpret and this cannot ($, `, |, &, ;,
// <, >, (, ), and # at the start of a word) is refused unless quoted, as
// are unbalanced quotes and a final lone backslash, each with a message
// that says how to write it.
func splitCommand(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word (a quoted empty string is a word too)
	)
	end := func() {
		if in {
			words = append(words, cur.String())
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n':
			end()
		case '\\':
			if i+1 == len(s) {
				return nil, errors.New(`it ends with a lone backslash: write \\ for a backslash`)
			}
			i++
			if s[i] != '\n' { // backslash-newline joins lines
				cur.WriteByte(s[i])
				in = true
			}
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("the single quote at byte %d is never closed", i+1)
			}
			cur.WriteString(s[i+1 : i+1+j])
			in = true
			i += j + 1
		case '"':
			start := i
			for i++; ; i++ {
				if i == len(s) {
					return nil, fmt.Errorf("the double quote at byte %d is never closed", start+1)
				}
				d := s[i]
				if d == '"' {
					break
				}
				if d == '$' || d == '`' {
					return nil, fmt.Errorf("%q inside double quotes would be expanded by a shell, and the command runs without one: put it in single quotes to pass it as it is", d)
				}
				if d == '\\' && i+1 < len(s) && strings.IndexByte("\\\"\n$`", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
					d = s[i]
				}
				cur.WriteByte(d)
			}
			in = true
		case '$', '`', '|', '&', ';', '<', '>', '(', ')':
			return nil, fmt.Errorf("%q is shell syntax, and the command runs without a shell: quote it ('%c') to pass it as an argument", c, c)
		case '#':
			if !in {
				return nil, errors.New(`"#" would start a comment in a shell: quote it ('#') to pass it as an argument`)
			}
			cur.WriteByte(c)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	end()
	if len(words) == 0 {
		return nil, errors.New("it names no program")
	}
	return words, nil
}
