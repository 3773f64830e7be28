package chunker

import (
	"fmt"
	"math/bits"
)

// Default chunk sizes.
const (
	DefaultMinSize = 256 << 10
	DefaultAvgSize = 1 << 20
	DefaultMaxSize = 4 << 20
)

// Hard limits on the chunk size parameters. MaxChunkSizeLimit also bounds
// every chunk any decoder accepts.
const (
	MinChunkSizeLimit = gearWindow // the gear window must fit inside the minimum chunk
	MaxChunkSizeLimit = 64 << 20
)

// Config sets the chunk size distribution. The zero value means the defaults.
type Config struct {
	// MinSize is the smallest chunk, except for the last chunk of a blob.
	// No boundary is searched for in the first MinSize bytes of a chunk.
	MinSize int `yaml:"min_size" json:"min_size"`
	// AvgSize is the target ("normal") chunk size. It must be a power of two.
	AvgSize int `yaml:"avg_size" json:"avg_size"`
	// MaxSize is the largest chunk; a boundary is forced there.
	MaxSize int `yaml:"max_size" json:"max_size"`
	// Normalization is FastCDC's normalization level: before AvgSize the
	// boundary test uses Normalization more mask bits, after it that many
	// fewer, which pulls chunk sizes towards AvgSize. Default 2; -1 turns it
	// off (0 would mean the default).
	Normalization int `yaml:"normalization" json:"normalization"`
}

// WithDefaults returns c with zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.MinSize == 0 {
		c.MinSize = DefaultMinSize
	}
	if c.AvgSize == 0 {
		c.AvgSize = DefaultAvgSize
	}
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.Normalization == 0 {
		c.Normalization = 2
	}
	return c
}

// Validate reports why c (after defaults) cannot be used, wrapping ErrBadConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.MinSize < MinChunkSizeLimit:
		return fmt.Errorf("%w: min size %d is below %d", ErrBadConfig, c.MinSize, MinChunkSizeLimit)
	case c.MaxSize > MaxChunkSizeLimit:
		return fmt.Errorf("%w: max size %d is above %d", ErrBadConfig, c.MaxSize, MaxChunkSizeLimit)
	case c.AvgSize&(c.AvgSize-1) != 0:
		return fmt.Errorf("%w: average size %d is not a power of two", ErrBadConfig, c.AvgSize)
	case !(c.MinSize < c.AvgSize && c.AvgSize < c.MaxSize):
		return fmt.Errorf("%w: need min < avg < max, have %d, %d, %d", ErrBadConfig, c.MinSize, c.AvgSize, c.MaxSize)
	case c.Normalization < -1 || c.Normalization > 8:
		return fmt.Errorf("%w: normalization %d is outside -1..8", ErrBadConfig, c.Normalization)
	}
	if b := bits.Len(uint(c.AvgSize)) - 1; b-c.level() < 1 {
		return fmt.Errorf("%w: normalization %d is too high for average size %d", ErrBadConfig, c.Normalization, c.AvgSize)
	}
	return nil
}

// level is the normalization level with -1 meaning none.
func (c Config) level() int { return max(c.Normalization, 0) }

// thresholds returns the gear thresholds used before (small) and after
// (large) the average size. A candidate needs h < thr, i.e. the top
// log2(avg)±level bits of the hash to be zero.
func (c Config) thresholds() (small, large uint64) {
	b := bits.Len(uint(c.AvgSize)) - 1
	return uint64(1) << (64 - b - c.level()), uint64(1) << (64 - b + c.level())
}
