package store

import (
	"fmt"
	"log/slog"
	"time"
)

// VerifyMode says when a read re-hashes a chunk.
type VerifyMode string

// The verify modes.
const (
	// VerifyFirstRead (the default) re-hashes a chunk on its first read
	// after the store opened. Chunks this store wrote, or has read and
	// checked since it opened, are trusted: what sits on disk from an
	// earlier run (a torn write, bit rot, an edit while the daemon was
	// down) is caught, and a seeder does not hash each chunk again for
	// every peer it serves it to.
	VerifyFirstRead VerifyMode = "first-read"
	// VerifyAlways re-hashes on every read, catching changes made behind
	// the store's back while it runs, at the cost of a SHA-256 per read.
	VerifyAlways VerifyMode = "always"
	// VerifyNever trusts the files; only a changed size is noticed.
	VerifyNever VerifyMode = "never"
)

// Config configures a Store. Start from DefaultConfig.
type Config struct {
	// Dir is the store's root directory. It is created if missing. The
	// store owns the subdirectories chunks/, manifests/, pins/ and tmp/ and
	// the file LOCK; other files in Dir are ignored.
	Dir string `yaml:"dir" json:"dir"`
	// Capacity bounds the total size of stored chunks in bytes (the sum of
	// their lengths, not their disk blocks). 0 means unlimited. When a Put
	// would exceed it, least recently used unpinned chunks are evicted.
	Capacity int64 `yaml:"capacity" json:"capacity"`
	// VerifyOnRead says which reads re-hash a chunk ("first-read",
	// "always" or "never"; empty means "first-read"). A chunk whose data
	// no longer matches its digest is dropped, never returned.
	VerifyOnRead VerifyMode `yaml:"verify_on_read" json:"verify_on_read"`
}

// DefaultConfig returns the default configuration for a store in dir:
// unlimited capacity and verification on a chunk's first read.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, VerifyOnRead: VerifyFirstRead}
}

// Validate reports why c cannot be used, wrapping ErrBadConfig.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: dir is empty", ErrBadConfig)
	case c.Capacity < 0:
		return fmt.Errorf("%w: capacity %d is negative (0 means unlimited)", ErrBadConfig, c.Capacity)
	}
	switch c.VerifyOnRead {
	case "", VerifyFirstRead, VerifyAlways, VerifyNever:
	default:
		return fmt.Errorf("%w: verify_on_read %q: want %q, %q or %q", ErrBadConfig, c.VerifyOnRead, VerifyFirstRead, VerifyAlways, VerifyNever)
	}
	return nil
}

// Option adjusts a Store at Open.
type Option func(*options)

// WithLogger sets the logger. The default discards everything; nil means
// the default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

type options struct {
	log *slog.Logger
	// touchInterval is how stale a chunk file's mtime may get before a read
	// refreshes it. The mtime orders chunks for eviction after a restart.
	touchInterval time.Duration
	hooks         hooks
}

// defaultTouchInterval limits mtime updates to one per chunk per minute,
// which is precise enough for eviction order after a restart.
const defaultTouchInterval = time.Minute
