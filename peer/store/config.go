package store

import (
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Store. Start from DefaultConfig: the zero value of
// VerifyOnRead is false, which turns read verification off.
type Config struct {
	// Dir is the store's root directory. It is created if missing. The
	// store owns the subdirectories chunks/, manifests/, pins/ and tmp/ and
	// the file LOCK; other files in Dir are ignored.
	Dir string `yaml:"dir" json:"dir"`
	// Capacity bounds the total size of stored chunks in bytes (the sum of
	// their lengths, not their disk blocks). 0 means unlimited. When a Put
	// would exceed it, least recently used unpinned chunks are evicted.
	Capacity int64 `yaml:"capacity" json:"capacity"`
	// VerifyOnRead re-hashes every chunk read and drops chunks whose data no
	// longer matches their digest, so bit rot is never served. Default true.
	VerifyOnRead bool `yaml:"verify_on_read" json:"verify_on_read"`
}

// DefaultConfig returns the default configuration for a store in dir:
// unlimited capacity and verification on read.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, VerifyOnRead: true}
}

// Validate reports why c cannot be used, wrapping ErrBadConfig.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: dir is empty", ErrBadConfig)
	case c.Capacity < 0:
		return fmt.Errorf("%w: capacity %d is negative (0 means unlimited)", ErrBadConfig, c.Capacity)
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
