package mcpauth

import "errors"

// The session binding table, for intermediaries: Handler uses it itself.

// ErrForeignSession is returned by CheckSession for a session that another
// identity created; answer 403 (see Handler).
var ErrForeignSession = errors.New("session belongs to another identity")

// ErrUnknownSession is returned by CheckSession for a session the Guard
// holds no binding for (never created through it, ended, expired or
// evicted); answer 404 "session not found", and the client starts a new
// one.
var ErrUnknownSession = errors.New("session not found")

// CheckSession tells whether the MCP session sid may be used by c: nil
// when c's identity created it (the binding is marked used),
// ErrForeignSession or ErrUnknownSession otherwise.
func (g *Guard) CheckSession(sid string, c *Caller) error {
	switch g.checkSession(sid, c.ID()) {
	case sessionForeign:
		return ErrForeignSession
	case sessionUnbound:
		return ErrUnknownSession
	}
	return nil
}

// BindSession records that c's identity created the MCP session sid
// (announced by the server's Mcp-Session-Id), unless it is bound already.
func (g *Guard) BindSession(sid string, c *Caller) { g.bindSession(sid, c.ID()) }

// EndSession drops the binding of session sid (after a DELETE the server
// accepted).
func (g *Guard) EndSession(sid string) { g.dropSession(sid) }
