package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/smallstep/certificates/authority"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/internal/atomicfile"
)

// Replicas
//
// With WithPostgres, any number of CA processes (replicas) serve one CA on
// one PostgreSQL database: each has its own copy of the CA directory (keys,
// certificates, configuration) and shares through the database what must
// be shared: used tokens, certificates, revocations, the CRL and its
// number, renewal lineage, identity revocations, and the configuration.
//
// The configuration (config/ca.json: provisioners; config/mcpca.json:
// their limits, lifetimes) is versioned in the database (store.SharedConfig).
// A replica publishes its files when they changed here (mcpca provisioner
// add, an edit, then SIGHUP, or at start); every replica polls the version
// (one read every DefaultConfigPoll) and, when it is newer, writes the
// files into its directory and reloads, without a restart. What a replica
// last applied is in db/shared-config.json of its directory. If the files
// were edited here while another replica published, the other's wins: the
// local edit is kept beside as <file>.unpublished and logged, to be made
// again.

// DefaultConfigPoll is how often a replica on PostgreSQL checks for a
// newer shared configuration.
const DefaultConfigPoll = 2 * time.Second

// sharedFiles are the CA directory's files every replica shares.
var sharedFiles = []string{filepath.Join("config", "ca.json"), filepath.Join("config", "mcpca.json"), rotationName}

// rotationName is config/rotation.json (the CA generations with the
// intermediates' encrypted keys): shared when it exists, so a rotation
// made on one replica reaches every other, which applies it like the
// rest and rewrites its certs/root_ca.crt from it.
var rotationName = filepath.Join("config", "rotation.json")

// SharedConfigState is where a replica records the shared configuration
// it last applied (version and digest of its files).
func (l Layout) SharedConfigState() string { return l.p("db", "shared-config.json") }

// WithPostgres makes the CA use the PostgreSQL database of dsn (a
// postgres:// URL or key=value pairs; see store.OpenPostgres) instead of
// db/mcpca.db: several replicas can then serve the CA at once, each with
// its own copy of the directory.
func WithPostgres(dsn string) Option { return optionFunc(func(c *serverConfig) { c.postgres = dsn }) }

// WithConfigPoll sets how often a replica checks for a newer shared
// configuration (default DefaultConfigPoll).
func WithConfigPoll(d time.Duration) Option {
	return optionFunc(func(c *serverConfig) {
		if d > 0 {
			c.configPoll = d
		}
	})
}

// shared is a replica's view of the shared configuration.
type shared struct {
	applied int64  // version applied in this directory
	digest  string // digest of the files as applied or published
	stop    chan struct{}
	done    chan struct{}
}

type sharedState struct {
	Version int64  `json:"version"`
	Digest  string `json:"digest"`
}

func (s *Server) readShared() (map[string][]byte, string, error) {
	files := map[string][]byte{}
	for _, name := range sharedFiles {
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if name == rotationName && errors.Is(err, os.ErrNotExist) {
			continue // before the first rotation
		}
		if err != nil {
			return nil, "", errorf("reading %s: %w", name, err)
		}
		files[name] = b
	}
	return files, digestFiles(files), nil
}

func digestFiles(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (s *Server) saveSharedState() error {
	b, err := json.Marshal(&sharedState{Version: s.shared.applied, Digest: s.shared.digest})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.layout.SharedConfigState()), 0o700); err != nil {
		return errorf("%w", err)
	}
	return atomicfile.WriteFile(s.layout.SharedConfigState(), append(b, '\n'), 0o600)
}

// syncAtOpen brings this directory and the database's shared
// configuration together before the authority starts.
func (s *Server) syncAtOpen() error {
	s.shared = &shared{}
	var st sharedState
	if b, err := os.ReadFile(s.layout.SharedConfigState()); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return errorf("%s is corrupted: %v", s.layout.SharedConfigState(), err)
		}
	}
	for attempt := 0; ; attempt++ {
		local, d, err := s.readShared()
		if err != nil {
			return err
		}
		cur, err := s.store.SharedConfig()
		if err != nil {
			return errorf("reading the shared configuration: %w", err)
		}
		var conflict *store.ConfigConflictError
		switch {
		case cur == nil:
			v, err := s.store.PublishConfig(0, local)
			if errors.As(err, &conflict) && attempt < 3 {
				continue // another replica published first, at the same moment
			}
			if err != nil {
				return errorf("%w", err)
			}
			s.shared.applied, s.shared.digest = v, d
			s.cfg.logger.Info("shared configuration published", "event", "config", "version", v, "by", "start")
		case digestFiles(cur.Files) == d:
			s.shared.applied, s.shared.digest = cur.Version, d
		case st.Version == cur.Version && st.Digest != d:
			// Edited here since the last sync, and nobody published since.
			v, err := s.store.PublishConfig(cur.Version, local)
			if errors.As(err, &conflict) && attempt < 3 {
				continue
			}
			if err != nil {
				return errorf("%w", err)
			}
			s.shared.applied, s.shared.digest = v, d
			s.cfg.logger.Info("shared configuration published", "event", "config", "version", v, "by", "start")
		default:
			if err := s.writeShared(cur, st.Digest != "" && st.Digest != d); err != nil {
				return err
			}
		}
		return s.saveSharedState()
	}
}

// writeShared writes the shared configuration cur into the directory,
// keeping the local files beside when they hold an unpublished edit.
func (s *Server) writeShared(cur *store.SharedConfig, keepLocal bool) error {
	var files []atomicfile.File
	for _, name := range sharedFiles {
		data, ok := cur.Files[name]
		if !ok && name == rotationName {
			continue // published before any rotation
		}
		if !ok {
			return errorf("the shared configuration (version %d) has no %s", cur.Version, name)
		}
		path := filepath.Join(s.dir, name)
		if keepLocal {
			if old, err := os.ReadFile(path); err == nil && !bytes.Equal(old, data) {
				files = append(files, atomicfile.File{Path: path + ".unpublished", Data: old, Mode: 0o600})
				s.cfg.logger.Error("this replica's edit of "+name+" was not published: another replica published version "+fmt.Sprint(cur.Version)+" first, which applies here; the edit is in "+name+".unpublished: make it again",
					"event", "config", "file", name)
			}
		}
		files = append(files, atomicfile.File{Path: path, Data: data, Mode: 0o600})
	}
	if err := atomicfile.WriteFiles(files...); err != nil {
		return errorf("%w", err)
	}
	s.shared.applied, s.shared.digest = cur.Version, digestFiles(cur.Files)
	s.cfg.logger.Info("shared configuration applied", "event", "config", "version", cur.Version)
	return s.saveSharedState()
}

// publishLocal publishes this directory's files when they changed since
// the last sync (a reload after mcpca provisioner add). s.mu is held.
func (s *Server) publishLocal() error {
	local, d, err := s.readShared()
	if err != nil {
		return err
	}
	if d == s.shared.digest {
		return nil
	}
	v, err := s.store.PublishConfig(s.shared.applied, local)
	var conflict *store.ConfigConflictError
	if errors.As(err, &conflict) {
		cur, gerr := s.store.SharedConfig()
		if gerr != nil {
			return errorf("%w", gerr)
		}
		if werr := s.writeShared(cur, true); werr != nil {
			return werr
		}
		msg := errorf("another replica published the configuration (version %d) before this edit: that version applies here, and the edit is kept in config/*.unpublished: make it again", cur.Version)
		if rerr := s.reloadLocked("shared configuration"); rerr != nil {
			return errors.Join(msg, rerr)
		}
		return msg
	}
	if err != nil {
		return errorf("%w", err)
	}
	s.shared.applied, s.shared.digest = v, d
	s.cfg.logger.Info("shared configuration published", "event", "config", "version", v, "by", "reload")
	return s.saveSharedState()
}

// pollShared applies newer shared configurations until Close.
func (s *Server) pollShared() {
	defer close(s.shared.done)
	for {
		t := s.cfg.clock.NewTimer(s.cfg.configPoll)
		select {
		case <-s.shared.stop:
			t.Stop()
			return
		case <-t.C():
		}
		v, err := s.store.ConfigVersion()
		if err != nil {
			continue // the database is away: /health says so
		}
		s.mu.Lock()
		if !s.closed && v > s.shared.applied {
			if err := s.applyNewer(); err != nil {
				s.cfg.logger.Error("applying the shared configuration failed; the previous configuration stays", "event", "config", "error", err.Error())
			}
		}
		s.mu.Unlock()
	}
}

// applyNewer writes the newer shared configuration and reloads. s.mu is
// held.
func (s *Server) applyNewer() error {
	cur, err := s.store.SharedConfig()
	if err != nil || cur == nil || cur.Version <= s.shared.applied {
		return err
	}
	_, d, err := s.readShared()
	if err != nil {
		return err
	}
	if err := s.writeShared(cur, d != s.shared.digest); err != nil {
		return err
	}
	return s.reloadLocked("shared configuration")
}

// newAuthority starts step-ca's authority, again when the CRL it generates
// at start lost the race for its number to another replica's.
func newAuthority(build func() (*authority.Authority, error)) (*authority.Authority, error) {
	var err error
	for range 5 {
		var a *authority.Authority
		if a, err = build(); err == nil {
			return a, nil
		}
		var ne *store.CRLNumberError
		if !errors.As(err, &ne) {
			break
		}
	}
	return nil, err
}

// regenerateCRL regenerates the CRL, again when another replica stored one
// with the same number meanwhile (the next try reads it and goes above).
func regenerateCRL(auth *authority.Authority) error {
	var err error
	for range 5 {
		if err = auth.GenerateCertificateRevocationList(); err == nil {
			return nil
		}
		var ne *store.CRLNumberError
		if !errors.As(err, &ne) {
			return err
		}
	}
	return err
}

// healthTimeout bounds /health's check of the database.
const healthTimeout = 2 * time.Second

// HealthResponse is the answer of /health: step-ca's {"status": "ok"},
// with the database the CA runs on and, when it is unreachable (503),
// why.
type HealthResponse struct {
	Status   string `json:"status"`
	Database string `json:"database,omitempty"`
	Message  string `json:"message,omitempty"`
}

// handleHealth answers /health: 200 when the database answers, 503 with
// the reason when it does not (a load balancer's health check).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.store == nil {
		writeJSON(w, http.StatusOK, &HealthResponse{Status: "ok", Database: "step-ca"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, &HealthResponse{Status: "unavailable", Database: s.store.Backend(),
			Message: "the CA's database is unreachable: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, &HealthResponse{Status: "ok", Database: s.store.Backend()})
}

// unavailable answers 503 when the database is unreachable (checked
// again now if the last contact failed); false when it answers.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request) bool {
	if s.store == nil || s.store.Unavailable() == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	err := s.store.Ping(ctx)
	if err == nil {
		return false
	}
	s.cfg.logger.Warn("request refused: the database is unreachable", "event", "database", "error", err.Error(), "client", r.RemoteAddr)
	writeError(w, http.StatusServiceUnavailable, errorf("the CA's database is unreachable; nothing was issued or revoked: try again shortly"))
	return true
}
