// Package atomicfile writes files so that a reader sees either the old
// content or the new, never a mix: a temporary file in the same directory,
// fsync, rename, then fsync of the directory. WriteFiles replaces several
// files as one step as far as a file system allows: nothing is renamed
// unless every new file was written. It is the one atomic writer of the CA,
// the agent and the CLI.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is one file to replace: its path, content and permissions.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode
}

// WriteFile atomically replaces path with data, with permissions perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFiles(File{Path: path, Data: data, Mode: perm})
}

// WriteFiles writes every file to a temporary file next to it (fsynced),
// then renames them in order and fsyncs their directories. Nothing is
// renamed unless every temporary file was written; the temporary files are
// removed on failure. Errors read "writing PATH: CAUSE".
func WriteFiles(files ...File) error {
	tmps := make([]string, len(files))
	defer func() {
		for _, t := range tmps {
			if t != "" {
				_ = os.Remove(t)
			}
		}
	}()
	for i, f := range files {
		t, err := writeTemp(f)
		if err != nil {
			return err
		}
		tmps[i] = t
	}
	dirs := map[string]bool{}
	for i, f := range files {
		if err := os.Rename(tmps[i], f.Path); err != nil {
			return fmt.Errorf("writing %s: %w", f.Path, cause(err))
		}
		tmps[i] = ""
		dirs[filepath.Dir(f.Path)] = true
	}
	for d := range dirs {
		if err := SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// writeTemp writes f's data to a new temporary file next to f.Path and
// fsyncs it.
func writeTemp(f File) (string, error) {
	t, err := os.CreateTemp(filepath.Dir(f.Path), "."+filepath.Base(f.Path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", f.Path, cause(err))
	}
	name := t.Name()
	fail := func(err error) (string, error) {
		_ = t.Close()
		_ = os.Remove(name)
		return "", fmt.Errorf("writing %s: %w", f.Path, cause(err))
	}
	if err := t.Chmod(f.Mode); err != nil {
		return fail(err)
	}
	if _, err := t.Write(f.Data); err != nil {
		return fail(err)
	}
	if err := t.Sync(); err != nil {
		return fail(err)
	}
	if err := t.Close(); err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("writing %s: %w", f.Path, cause(err))
	}
	return name, nil
}

// SyncDir fsyncs a directory so that a rename in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, cause(err))
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, cause(err))
	}
	return nil
}

// cause drops the operation and path of an *os.PathError (or LinkError),
// which the message names already.
func cause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
