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
	// Config.OriginAfterFailures times on peers (timeouts, errors, corrupt
	// data; not busy or not-found answers). Origins do not count towards a
	// chunk's availability. A chunk that qualifies for an origin because it
	// failed on peers is not reserved for it: whichever of the origin and
	// the peers that have it (and have not failed it) has a free slot first
	// is asked.
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
	DefaultMaxInflightPerPeer   = 4
	DefaultMaxInflightPerOrigin = 2
	DefaultRequestTimeout       = 10 * time.Second
	DefaultEndgameThreshold     = 8
	DefaultMaxDuplicates        = 2
	DefaultOriginAfterFailures  = 2
	DefaultBanThreshold         = 3
	DefaultBusyBackoff          = 50 * time.Millisecond
	DefaultMaxBusyBackoff       = time.Second
	DefaultOriginBusyBackoff    = 250 * time.Millisecond
	DefaultMaxOriginBusyBackoff = 8 * time.Second
	DefaultDeferBackoff         = time.Second
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
	// MinInflightPerPeer, when set, shares MaxInflightPerPeer out among
	// the connected peers (fallback origins aside): with n of them, a
	// peer's pipelining depth is at most MaxInflightPerPeer/n, rounded
	// up, but no less than MinInflightPerPeer. A peer answers its requests
	// in order, so a chunk queued behind others at a busy peer waits there
	// while another peer that has it sits idle; a lone source still gets
	// the whole depth, which covers the round trips of a fast link. In
	// the simulator, 2 (with MaxInflightPerPeer 8) cut p99 by 8-15% in
	// fan-outs of 100 to 2,600 peers and sent fewer copies from the
	// origin; in emulation of 1,000 peers it was no better (two runs
	// each, within a run-to-run spread of 25%), so it is off by default
	// (docs/benchmarks.md, "Session 7: where a crowd's capacity goes").
	// 0 (the default): every peer gets MaxInflightPerPeer.
	MinInflightPerPeer int `yaml:"min_inflight_per_peer" json:"min_inflight_per_peer"`
	// MaxInflightPerOrigin caps the pipelining depth at a fallback origin
	// (OriginFallback) while any other peer is connected. The origin's
	// few upload slots then go to many peers, each of which gets a
	// different chunk to pass on to the rest, rather than a few peers'
	// deep pipelines; a peer alone with the origin pipelines as deep as
	// MaxInflightPerPeer. Default 2.
	MaxInflightPerOrigin int `yaml:"max_inflight_per_origin" json:"max_inflight_per_origin"`
	// MaxInflight caps the requests outstanding over all peers but
	// fallback origins (MaxInflightPerOrigin caps those, and they neither
	// count nor wait for room here: a peer whose few requests wait at a
	// slow origin must still ask its peers); 0 or negative: no cap (the
	// default). Once a request ends, its place may go to any peer, not
	// only the one that answered.
	MaxInflight int `yaml:"max_inflight" json:"max_inflight"`
	// RequestTimeout is how long a peer may keep its oldest outstanding
	// request waiting without progress, at least: a peer answers its
	// requests in order, so the clock of a request starts when it becomes
	// the oldest one at its peer (when it is made to an idle peer, or when
	// the one before it is answered or cancelled), and restarts whenever
	// part of it arrives (ChunkProgress). A peer whose oldest request times
	// out has stalled: the first Tick at or after that time cancels all its
	// requests, frees its slots and requests the chunks elsewhere (only the
	// oldest counts as a failure of its chunk); a late answer is still
	// accepted if the chunk is still missing. Counting from the request
	// instead would time out the back of a deep pipeline on a slow link
	// although the peer is busy answering the front.
	//
	// The timeout adapts to each peer's link: it is the least
	// RequestTimeout<<l, for l from 0 to 4, that is at least three times
	// the peer's longest recent wait for data (from when a request became
	// the oldest, or last made progress, until data came), and a stall
	// doubles the peer's next timeout. A new peer starts from the estimate
	// over all peers. So a chunk that arrives in one piece after 25s, on a
	// link shared by many uploads, makes the peer slow but not stalled,
	// and a peer that hangs after answering quickly is still dropped after
	// RequestTimeout. Long before that, a peer whose oldest request gets
	// no data for three times the fleet's longest recent wait (at least
	// RequestTimeout/8) is suspected of stalling and its chunks are
	// requested elsewhere (see the package doc). Default 10s.
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
	// attempts at peers (timeouts, FailError rejections, corrupt data) make
	// a chunk eligible for an origin even though peers advertise it. Busy
	// and not-found answers do not count: a busy peer is paused (see
	// BusyBackoff), and a not-found answer withdraws the chunk from the
	// peer's advertisement, so that the origin qualifies anyway once no
	// peer advertises it. Default 2.
	OriginAfterFailures int `yaml:"origin_after_failures" json:"origin_after_failures"`
	// BanThreshold is the number of chunks failing verification after
	// which a peer is banned: it is never asked for anything again, its
	// availability is forgotten, and a Ban action tells the engine to drop
	// it. Offences are counted per peer ID across reconnections. Default 3.
	BanThreshold int `yaml:"ban_threshold" json:"ban_threshold"`
	// BusyBackoff is how long a peer that rejected a request as busy first
	// gets no new requests. Every further busy answer after a pause has
	// ended doubles the pause, up to MaxBusyBackoff, until the peer
	// delivers a chunk. Busy answers that arrive while the peer is paused
	// (to requests made before the pause) change nothing. A pause ends at
	// the first Tick at or after its end. Default 50ms: a busy origin (whose
	// few upload slots turn a flash crowd away) is asked again soon, and so
	// stays busy, while a peer that keeps refusing is asked ever less often.
	BusyBackoff time.Duration `yaml:"busy_backoff" json:"busy_backoff"`
	// MaxBusyBackoff caps the busy pause. Default 1s, or BusyBackoff if
	// that is longer.
	MaxBusyBackoff time.Duration `yaml:"max_busy_backoff" json:"max_busy_backoff"`
	// OriginBusyBackoff and MaxOriginBusyBackoff are BusyBackoff and
	// MaxBusyBackoff for a fallback origin. An origin facing a crowd turns
	// away all but a few requesters, and every request and refusal crosses
	// its link: on a 0.25 Mbit/s origin, 256 peers asking again after
	// 50 ms, 100 ms, … 1 s left it no room for chunk data for a minute
	// (docs/benchmarks.md, "Session 6: fanout-1000 in emulation"). A first
	// pause much longer than a chunk's time starves honest peers of a small
	// fleet's origin while stalled ones take its freed slots (1 s did, in
	// testbed/sim TestStalledOriginBound). Defaults 250ms and 8s.
	OriginBusyBackoff    time.Duration `yaml:"origin_busy_backoff" json:"origin_busy_backoff"`
	MaxOriginBusyBackoff time.Duration `yaml:"max_origin_busy_backoff" json:"max_origin_busy_backoff"`
	// DeferBackoff is how long an origin is not asked again for a chunk
	// it deferred (FailDeferred: it sent the chunk to another peer a
	// moment ago). Meanwhile the origin is asked for other chunks, and
	// the peer that got it announces it. Default 1s.
	DeferBackoff time.Duration `yaml:"defer_backoff" json:"defer_backoff"`
	// InOrder makes peers be asked for chunks near the front of the blob:
	// the rarest of the first InOrderWindow pending chunks a peer has
	// (ties to the lowest index), rather than the rarest of all. It is for
	// a reader that consumes the blob in order as it arrives (the
	// registry mirror's streams), at some cost in piece diversity across
	// the swarm. Origins keep their own order. The engine sets it per
	// pull (peer.PullOptions.InOrder), never a config file.
	InOrder bool `yaml:"-" json:"-"`
}

// InOrderWindow is how many of the first pending chunks Config.InOrder
// picks the rarest from.
const InOrderWindow = 16

// DefaultConfig returns the defaults that the zero Config stands for.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.MaxInflightPerPeer == 0 {
		c.MaxInflightPerPeer = DefaultMaxInflightPerPeer
	}
	if c.MaxInflightPerOrigin == 0 {
		c.MaxInflightPerOrigin = DefaultMaxInflightPerOrigin
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
	if c.DeferBackoff == 0 {
		c.DeferBackoff = DefaultDeferBackoff
	}
	if c.MaxBusyBackoff == 0 {
		c.MaxBusyBackoff = max(DefaultMaxBusyBackoff, c.BusyBackoff)
	}
	if c.OriginBusyBackoff == 0 {
		c.OriginBusyBackoff = DefaultOriginBusyBackoff
	}
	if c.MaxOriginBusyBackoff == 0 {
		c.MaxOriginBusyBackoff = max(DefaultMaxOriginBusyBackoff, c.OriginBusyBackoff)
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
	case c.MinInflightPerPeer < 0 || c.MinInflightPerPeer > MaxMaxInflightPerPeer:
		return bad("min inflight per peer %d is outside [0, %d] (0: no sharing)", c.MinInflightPerPeer, MaxMaxInflightPerPeer)
	case c.MaxInflightPerOrigin < 0 || c.MaxInflightPerOrigin > MaxMaxInflightPerPeer:
		return bad("max inflight per origin %d is outside [1, %d] (0 selects %d)", c.MaxInflightPerOrigin, MaxMaxInflightPerPeer, DefaultMaxInflightPerOrigin)
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
	case c.DeferBackoff < 0:
		return bad("defer backoff %v is negative (0 selects %v)", c.DeferBackoff, DefaultDeferBackoff)
	}
	d := c.withDefaults()
	if err := checkBackoff("busy backoff", c.BusyBackoff, c.MaxBusyBackoff, d.BusyBackoff, DefaultBusyBackoff, DefaultMaxBusyBackoff); err != nil {
		return err
	}
	return checkBackoff("origin busy backoff", c.OriginBusyBackoff, c.MaxOriginBusyBackoff, d.OriginBusyBackoff, DefaultOriginBusyBackoff, DefaultMaxOriginBusyBackoff)
}

// checkBackoff validates a pause that starts at first and doubles up to
// limit (zero selects the default def or defLimit); firstOrDefault is first
// with its default applied.
func checkBackoff(name string, first, limit, firstOrDefault, def, defLimit time.Duration) error {
	switch {
	case first < 0:
		return fmt.Errorf("%w: %s %v is negative (0 selects %v)", ErrBadConfig, name, first, def)
	case limit < 0:
		return fmt.Errorf("%w: max %s %v is negative (0 selects %v)", ErrBadConfig, name, limit, defLimit)
	case limit != 0 && limit < firstOrDefault:
		return fmt.Errorf("%w: max %s %v is below the %s %v", ErrBadConfig, name, limit, name, firstOrDefault)
	}
	return nil
}
