package origin

import (
	"errors"
	"fmt"
	"time"

	"github.com/p2pd/p2pd/chunker"
)

// ErrBadConfig wraps the errors of Config.Validate.
var ErrBadConfig = errors.New("origin: invalid config")

// Defaults.
const (
	DefaultShutdownTimeout = 10 * time.Second
	DefaultStallTimeout    = time.Minute
)

// Config configures an origin. The zero value means the defaults: no size
// limit, the chunker's default chunk sizes. Who may push, read and delete
// is Deps.Auth's business.
type Config struct {
	// MaxBlobSize bounds a pushed blob in bytes; 0 means unlimited. A
	// push over it is refused with 413 and nothing of it is kept.
	MaxBlobSize int64 `yaml:"max_blob_size"`
	// Chunker sets the chunk sizes of pushed blobs.
	Chunker chunker.Config `yaml:"chunker"`
	// ShutdownTimeout bounds the wait for requests in flight when Serve's
	// context ends (default 10s). Pushes still running then are aborted
	// and rolled back.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// StallTimeout is how long a push body or a blob download may go
	// without any progress before its connection is dropped (default 1m).
	// Serve sets no overall read or write timeout, since a push or a
	// download may rightly take hours.
	StallTimeout time.Duration `yaml:"stall_timeout"`
}

// WithDefaults returns c with zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	c.Chunker = c.Chunker.WithDefaults()
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	return c
}

// Validate reports why c (after defaults) is unusable, wrapping
// ErrBadConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.MaxBlobSize < 0:
		return fmt.Errorf("%w: max_blob_size %d is negative (0 means unlimited)", ErrBadConfig, c.MaxBlobSize)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("%w: shutdown_timeout %v is negative", ErrBadConfig, c.ShutdownTimeout)
	case c.StallTimeout < 0:
		return fmt.Errorf("%w: stall_timeout %v is negative", ErrBadConfig, c.StallTimeout)
	}
	if err := c.Chunker.Validate(); err != nil {
		return fmt.Errorf("%w: chunker: %w", ErrBadConfig, err)
	}
	return nil
}
