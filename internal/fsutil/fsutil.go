// Package fsutil holds the file-system primitives that make writes atomic:
// nothing half-written is ever visible under its final name.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
)

// ErrNoSpace wraps ENOSPC and EDQUOT from the file system.
var ErrNoSpace = errors.New("no space left on device")

// TempSuffix ends the name of every temp file this package creates, so a
// directory's owner can find and remove the leftovers of a crash.
const TempSuffix = ".tmp"

var seq atomic.Uint64

// AtomicFile describes how to write a file atomically: to a temp file, then
// fsync, rename, and fsync of the directory. Readers see either no file (or
// the old one) or the whole new one, even after a crash. The zero value
// writes the temp file next to the final one with mode 0644.
type AtomicFile struct {
	// TempDir holds the temp file; it must be on the final file's file
	// system. Empty means the final file's directory.
	TempDir string
	// Perm is the new file's mode, set with chmod so that the umask does
	// not change it; zero means 0644 unless ExactPerm is set.
	Perm os.FileMode
	// ExactPerm makes a zero Perm mean mode 0000.
	ExactPerm bool
	// OpenTemp creates the temp file (O_EXCL); tests replace it to inject
	// faults. Nil means OpenExclusive.
	OpenTemp func(path string) (*os.File, error)
	// BeforeRename, if set, runs after the temp file is synced and before
	// it is renamed (a test hook).
	BeforeRename func(tmp, final string)
}

// OpenExclusive creates path for writing, mode 0600 (Write then sets the
// final mode), and fails if it exists.
func OpenExclusive(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// Write writes final with the bytes write produces. On any error the temp
// file is removed and final is untouched. Errors are returned unclassified.
func (a AtomicFile) Write(final string, write func(io.Writer) error) error {
	dir := a.TempDir
	if dir == "" {
		dir = filepath.Dir(final)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.%d%s", filepath.Base(final), os.Getpid(), seq.Add(1), TempSuffix))
	open := a.OpenTemp
	if open == nil {
		open = OpenExclusive
	}
	f, err := open(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create temp file for %s: %w", final, err)
	}
	perm := a.Perm
	if perm == 0 && !a.ExactPerm {
		perm = 0o644
	}
	// The mode is set before any byte is written: a secret is never
	// readable by others, even for a moment.
	err = f.Chmod(perm)
	if err == nil {
		err = write(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && a.BeforeRename != nil {
		a.BeforeRename(tmp, final)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("write %s: %w", final, err)
	}
	if err := SyncDir(filepath.Dir(final)); err != nil {
		// The file may not be durable under its name: do not claim it.
		os.Remove(final)
		return err
	}
	return nil
}

// WriteFileAtomic writes path atomically with mode perm (see AtomicFile).
// A full disk gives an error that wraps ErrNoSpace.
func WriteFileAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	if err := (AtomicFile{Perm: perm}).Write(path, write); err != nil {
		if IsNoSpace(err) {
			return fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return err
	}
	return nil
}

// SyncDir fsyncs a directory so that entries created, renamed or removed in
// it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// IsNoSpace reports whether err says the file system is full.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
