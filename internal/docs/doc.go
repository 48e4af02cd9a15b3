// Package docs checks the documentation: every Go snippet in README.md and
// docs/*.md is taken from an Example function (whose package compiles with
// the tests), so no snippet a reader copies is out of date.
package docs
