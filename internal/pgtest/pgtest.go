// Package pgtest runs a throwaway PostgreSQL cluster for the tests of one
// test binary: the first test that asks starts it (initdb in a temporary directory, listening
// on a Unix socket there only, no TCP port), every test gets a fresh
// database from DSN, and the cluster is stopped and removed when the
// tests end.
//
// initdb refuses to run as root: as root, the cluster runs as the user
// postgres (runuser), which owns the temporary directory.
//
// Without PostgreSQL (initdb, pg_ctl) a test skips and says why, unless
// MCPCA_REQUIRE_POSTGRES=1 (set by .ci/run): then it fails, so CI never
// passes by skipping.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binDirs are where Debian's packages install PostgreSQL's programs.
var binDirs = []string{"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"}

// StartTimeout bounds the start of the cluster (initdb and the server's
// readiness) on a busy machine.
const StartTimeout = 2 * time.Minute

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	dir    string // temporary directory: data/, the socket, the log
	bin    string // directory of pg_ctl and initdb
	asUser string // "postgres" when run by root, else ""
	dbs    atomic.Int64
	mu     sync.Mutex
}

var (
	once       sync.Once
	cluster    *Cluster
	clusterErr error
	mainRan    bool
)

// Main runs the tests and stops the cluster if one of them started it
// (the first Get does). Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	mainRan = true
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping the cluster: %v\n", err)
		}
		cluster.Remove()
	}
	return code
}

// Required reports whether MCPCA_REQUIRE_POSTGRES=1: the tests must not skip.
func Required() bool { return os.Getenv("MCPCA_REQUIRE_POSTGRES") == "1" }

// Get returns the cluster, or skips (fails with MCPCA_REQUIRE_POSTGRES=1)
// when there is none.
func Get(t testing.TB) *Cluster {
	t.Helper()
	if !mainRan {
		t.Fatalf("pgtest: call pgtest.Main from the package's TestMain (it stops the cluster)")
	}
	once.Do(func() { cluster, clusterErr = StartCluster() })
	switch {
	case cluster != nil:
		return cluster
	case Required():
		t.Fatalf("PostgreSQL test FAILED: %v (MCPCA_REQUIRE_POSTGRES=1: CI runs this test, it does not skip it)", clusterErr)
	default:
		t.Skipf("PostgreSQL test SKIPPED: %v", clusterErr)
	}
	return nil
}

// DSN creates a fresh database for the test and returns its connection
// string (a postgres:// URL naming the socket directory).
func DSN(t testing.TB) string {
	t.Helper()
	return Get(t).NewDatabase(t)
}

// NewDatabase creates a fresh database and returns its URL.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	u, err := c.CreateDatabase()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// CreateDatabase creates a fresh database and returns its URL.
func (c *Cluster) CreateDatabase() (string, error) {
	name := "t" + strconv.FormatInt(c.dbs.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return c.URL(name), nil
}

// Remove deletes the cluster's directory (after Stop).
func (c *Cluster) Remove() { _ = os.RemoveAll(c.dir) }

// PID returns the process id of the server (the postmaster), or 0.
func (c *Cluster) PID() int {
	b, err := os.ReadFile(filepath.Join(c.data(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// URL is the connection URL of database name in the cluster.
func (c *Cluster) URL(name string) string {
	q := url.Values{"host": {c.dir}, "user": {"mcpca"}}
	return "postgres:///" + name + "?" + q.Encode()
}

// Dir is the cluster's directory (its socket is there).
func (c *Cluster) Dir() string { return c.dir }

func (c *Cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, c.URL(db))
}

// StartCluster starts a cluster of its own (for programs such as
// benchmarks; tests use Get or DSN). Stop it, then Remove it.
func StartCluster() (*Cluster, error) {
	bin := ""
	for _, d := range binDirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			bin = d
			break
		}
	}
	if bin == "" {
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			bin = filepath.Dir(p)
		} else {
			return nil, errors.New("PostgreSQL is not installed (no pg_ctl in " + strings.Join(binDirs, ", ") + " or on PATH; apt-get install postgresql-15)")
		}
	}
	dir, err := os.MkdirTemp("", "mcpca-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, errors.New("running as root, and there is no user postgres to run the cluster as (initdb refuses root)")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		c.asUser = "postgres"
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if out, err := c.run(ctx, "initdb", "-D", c.data(), "-U", "mcpca", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb failed: %v\n%s", err, out)
	}
	if err := c.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// run runs a PostgreSQL program (as the cluster's user).
func (c *Cluster) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, prog)
	var cmd *exec.Cmd
	if c.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// Start starts the server (after Stop) and returns once it accepts
// connections.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	opts := "-k " + c.dir + " -c listen_addresses= -c max_connections=100 -c shared_buffers=32MB"
	if out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", strconv.Itoa(int(StartTimeout/time.Second)), "-D", c.data(),
		"-l", filepath.Join(c.dir, "log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start failed: %v\n%s\n%s", err, out, log)
	}
	// pg_ctl -w waited for the server; confirm with a connection, bounded.
	for {
		conn, err := c.connect(ctx, "postgres")
		if err == nil {
			return conn.Close(ctx)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the cluster in %s does not accept connections: %v", c.dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (fast shutdown: sessions are disconnected).
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopLocked()
}

func (c *Cluster) stopLocked() error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-m", "fast", "-D", c.data()); err != nil {
		if strings.Contains(string(out), "Is server running?") {
			return nil
		}
		return fmt.Errorf("pg_ctl stop failed: %v\n%s", err, out)
	}
	return nil
}
