package sched

import (
	"errors"
	"fmt"
	"time"
)

// ErrBadConfig is wrapped by every error from Config.Validate and New.
var ErrBadConfig = errors.New("sched: invalid config")

// OriginPolicy says when the scheduler may request chunks from an origin.
type OriginPolicy uint8

const (
	// OriginFallback (the default) treats origins as seeders of last resort.
	// A chunk is requested from an origin only when no connected non-origin
	// peer advertises it, or when it has already failed
	// Config.OriginAfterFailures times on peers (timeouts, rejections,
	// corrupt data). Origins do not count towards a chunk's availability, and
	// once a chunk qualifies for an origin, peers are no longer asked for it
	// while an origin that has it is connected.
	OriginFallback OriginPolicy = iota
	// OriginAsPeer treats origins exactly like other peers.
	OriginAsPeer
)

// MarshalText writes the policy's name ("fallback" or "peer").
func (p OriginPolicy) MarshalText() ([]byte, error) {
	if p > OriginAsPeer {
		return nil, fmt.Errorf("%w: unknown origin policy %d", ErrBadConfig, uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads "fallback" or "peer", as in a YAML config.
func (p *OriginPolicy) UnmarshalText(b []byte) error {
	switch string(b) {
	case "fallback":
		*p = OriginFallback
	case "peer":
		*p = OriginAsPeer
	default:
		return fmt.Errorf("%w: origin policy %q: want \"fallback\" or \"peer\"", ErrBadConfig, b)
	}
	return nil
}

func (p OriginPolicy) String() string {
	switch p {
	case OriginFallback:
		return "fallback"
	case OriginAsPeer:
		return "peer"
	}
	return fmt.Sprintf("OriginPolicy(%d)", uint8(p))
}

// Defaults for the zero fields of a Config.
const (
	DefaultMaxInflightPerPeer  = 4
	DefaultRequestTimeout      = 10 * time.Second
	DefaultEndgameThreshold    = 8
	DefaultMaxDuplicates       = 2
	DefaultOriginAfterFailures = 2
	DefaultBanThreshold        = 3
	DefaultBusyBackoff         = time.Second
)

// Limits that Validate enforces, to keep per-chunk counters small.
const (
	MaxMaxInflightPerPeer = 1 << 12
	MaxMaxDuplicates      = 64
)

// Config tunes a Scheduler. The zero value of every field selects its
// default (DefaultConfig spells them out); negative values are invalid.
type Config struct {
	// MaxInflightPerPeer is the pipelining depth: the most requests
	// outstanding at one peer. A peer's window starts here, halves (to no
	// less than 1) on every timeout at that peer and grows back by one per
	// chunk it delivers. Default 4.
	MaxInflightPerPeer int `yaml:"max_inflight_per_peer" json:"max_inflight_per_peer"`
	// RequestTimeout is how long a request may stay unanswered. The first
	// Tick at or after that time cancels it, frees the peer's slot and
	// requests the chunk elsewhere; a late answer is still accepted if the
	// chunk is still missing. Default 10s.
	RequestTimeout time.Duration `yaml:"request_timeout" json:"request_timeout"`
	// EndgameThreshold: once at most this many chunks are missing, a peer
	// that has nothing un-requested left to fetch may be asked for a chunk
	// that is already outstanding elsewhere (up to MaxDuplicates requests
	// per chunk). When one copy arrives the others are cancelled. Default 8.
	EndgameThreshold int `yaml:"endgame_threshold" json:"endgame_threshold"`
	// MaxDuplicates bounds the outstanding requests for one chunk during
	// endgame, the original included. 1 disables endgame. Default 2.
	MaxDuplicates int `yaml:"max_duplicates" json:"max_duplicates"`
	// OriginPolicy says when origins are asked for chunks. Default
	// OriginFallback.
	OriginPolicy OriginPolicy `yaml:"origin_policy" json:"origin_policy"`
	// OriginAfterFailures is, under OriginFallback, how many failed
	// attempts at peers (timeouts, rejections, corrupt data) make a chunk
	// eligible for an origin even though peers advertise it. Default 2.
	OriginAfterFailures int `yaml:"origin_after_failures" json:"origin_after_failures"`
	// BanThreshold is the number of chunks failing verification after
	// which a peer is banned: it is never asked for anything again, its
	// availability is forgotten, and a Ban action tells the engine to drop
	// it. Offences are counted per peer ID across reconnections. Default 3.
	BanThreshold int `yaml:"ban_threshold" json:"ban_threshold"`
	// BusyBackoff is how long a peer that rejected a request as busy gets
	// no new requests. The pause ends at the first Tick at or after that
	// time. Default 1s.
	BusyBackoff time.Duration `yaml:"busy_backoff" json:"busy_backoff"`
}

// DefaultConfig returns the defaults that the zero Config stands for.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.MaxInflightPerPeer == 0 {
		c.MaxInflightPerPeer = DefaultMaxInflightPerPeer
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.EndgameThreshold == 0 {
		c.EndgameThreshold = DefaultEndgameThreshold
	}
	if c.MaxDuplicates == 0 {
		c.MaxDuplicates = DefaultMaxDuplicates
	}
	if c.OriginAfterFailures == 0 {
		c.OriginAfterFailures = DefaultOriginAfterFailures
	}
	if c.BanThreshold == 0 {
		c.BanThreshold = DefaultBanThreshold
	}
	if c.BusyBackoff == 0 {
		c.BusyBackoff = DefaultBusyBackoff
	}
	return c
}

// Validate reports why c cannot be used, wrapping ErrBadConfig. Zero fields
// are valid: they select defaults.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, a...)...)
	}
	switch {
	case c.MaxInflightPerPeer < 0 || c.MaxInflightPerPeer > MaxMaxInflightPerPeer:
		return bad("max inflight per peer %d is outside [1, %d] (0 selects %d)", c.MaxInflightPerPeer, MaxMaxInflightPerPeer, DefaultMaxInflightPerPeer)
	case c.RequestTimeout < 0:
		return bad("request timeout %v is negative (0 selects %v)", c.RequestTimeout, DefaultRequestTimeout)
	case c.EndgameThreshold < 0:
		return bad("endgame threshold %d is negative (0 selects %d)", c.EndgameThreshold, DefaultEndgameThreshold)
	case c.MaxDuplicates < 0 || c.MaxDuplicates > MaxMaxDuplicates:
		return bad("max duplicates %d is outside [1, %d] (0 selects %d)", c.MaxDuplicates, MaxMaxDuplicates, DefaultMaxDuplicates)
	case c.OriginPolicy > OriginAsPeer:
		return bad("unknown origin policy %d", uint8(c.OriginPolicy))
	case c.OriginAfterFailures < 0:
		return bad("origin after failures %d is negative (0 selects %d)", c.OriginAfterFailures, DefaultOriginAfterFailures)
	case c.BanThreshold < 0:
		return bad("ban threshold %d is negative (0 selects %d)", c.BanThreshold, DefaultBanThreshold)
	case c.BusyBackoff < 0:
		return bad("busy backoff %v is negative (0 selects %v)", c.BusyBackoff, DefaultBusyBackoff)
	}
	return nil
}
