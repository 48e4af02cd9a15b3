package policy

import (
	"time"

	"github.com/mcpca/mcpca/identity/audit"
)

// AuditRecord renders decision d on request r by principal p, which took
// latency to decide, as a record for an audit.Log. Args are copied;
// the log keeps them only with audit.WithArguments.
func AuditRecord(p *Principal, r Request, d Decision, latency time.Duration) audit.Record {
	rec := audit.Record{
		Time:      r.Time,
		SPIFFEID:  string(p.uid.ID),
		Serial:    p.serial,
		Auth:      string(p.auth),
		Roles:     p.ident.Roles,
		Method:    r.Method,
		Target:    r.Target,
		Decision:  d.String(),
		Policies:  d.Policies,
		LatencyUS: float64(latency.Nanoseconds()) / 1e3,
		Args:      r.Args,
	}
	if r.Source.IsValid() {
		rec.Source = r.Source.String()
	}
	return rec
}
