package ca

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mcpca/mcpca/ca/store"
)

// StoreReport describes the store of a stopped CA.
type StoreReport struct {
	Path      string
	DiskBytes int64 // the file's size
	store.Stats
}

// CheckStore checks the consistency of the store of the CA in dir (bbolt's
// page check and the store's own indexes) and reports its contents. The CA
// must be stopped: it takes the directory lock.
func CheckStore(dir string) (*StoreReport, error) {
	l := Layout{dir}
	unlock, err := lockStore(l)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := store.Open(l.Store())
	if err != nil {
		return nil, errorf("%w", err)
	}
	defer st.Shutdown()
	if err := st.Check(); err != nil {
		return nil, errorf("%w", err)
	}
	stats, err := st.Stats()
	if err != nil {
		return nil, errorf("%w", err)
	}
	fi, err := os.Stat(l.Store())
	if err != nil {
		return nil, errorf("%w", err)
	}
	return &StoreReport{Path: l.Store(), DiskBytes: fi.Size(), Stats: stats}, nil
}

// CompactStore rewrites the store of the CA in dir with its live records
// only (bbolt reuses the pages that pruning frees but never shrinks the
// file) and returns the file's size before and after. The CA must be
// stopped: it takes the directory lock, so a CA cannot start on the file
// while it is replaced.
func CompactStore(dir string) (before, after int64, err error) {
	l := Layout{dir}
	unlock, err := lockStore(l)
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	path := l.Store()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, errorf("%w", err)
	}
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, errorf("removing the leftover %s: %w", tmp, err)
	}
	if err := store.Compact(tmp, path); err != nil {
		return 0, 0, errorf("%w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return 0, 0, errorf("replacing %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	nfi, err := os.Stat(path)
	if err != nil {
		return 0, 0, errorf("%w", err)
	}
	return fi.Size(), nfi.Size(), nil
}

// lockStore takes the directory lock of a CA whose store exists.
func lockStore(l Layout) (func(), error) {
	if _, err := LoadSettings(l.Dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(l.Store()); err != nil {
		return nil, errorf("no store at %s: the CA has not been served yet, or serves with --database step-ca", l.Store())
	}
	lock, err := lockDir(l.LockFile())
	if err != nil {
		return nil, err
	}
	return lock.unlock, nil
}

// MigrateDatabase creates or migrates the store's schema in the PostgreSQL
// database of dsn (what every replica also does at start) and returns the
// schema version before and after. Replicas may be serving meanwhile.
func MigrateDatabase(ctx context.Context, dsn string) (before, after int, err error) {
	before, after, err = store.Migrate(ctx, dsn)
	if err != nil {
		return 0, 0, errorf("%w", err)
	}
	return before, after, nil
}

// CheckDatabase checks the store in the PostgreSQL database of dsn (its
// schema version and indexes) and reports its contents. Replicas may be
// serving meanwhile.
func CheckDatabase(ctx context.Context, dsn string) (*StoreReport, error) {
	st, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, errorf("%w", err)
	}
	defer st.Shutdown()
	if err := st.Check(); err != nil {
		return nil, errorf("%w", err)
	}
	stats, err := st.Stats()
	if err != nil {
		return nil, errorf("%w", err)
	}
	return &StoreReport{Path: st.Path(), DiskBytes: stats.FileBytes, Stats: stats}, nil
}
