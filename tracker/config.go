package tracker

import (
	"errors"
	"fmt"
	"time"

	"github.com/p2pd/p2pd/tracker/handout"
)

// ErrBadConfig wraps the errors of Config.Validate.
var ErrBadConfig = errors.New("tracker: invalid config")

// Defaults.
const (
	DefaultAnnounceInterval = 5 * time.Second
	// DefaultPeerTTLIntervals is PeerTTL's default in announce intervals.
	DefaultPeerTTLIntervals = 3
	DefaultShutdownTimeout  = 10 * time.Second
	// DefaultSampleFactor is CandidateSample's default in HandoutLimits.
	DefaultSampleFactor = 4
)

// Config configures a tracker. The zero value means the defaults.
type Config struct {
	// AnnounceInterval is how often peers are asked to announce, in
	// whole seconds (default 5s).
	AnnounceInterval time.Duration `yaml:"announce_interval"`
	// PeerTTL is how long a record lives without announces (default three
	// intervals). It must be at least two intervals, so that one late or
	// lost announce does not drop a peer.
	PeerTTL time.Duration `yaml:"peer_ttl"`
	// SweepInterval is how often expired records are freed (default
	// PeerTTL/3). Reads skip expired records in between.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// HandoutLimit is the most peers in an announce response (default 50).
	HandoutLimit int `yaml:"handout_limit"`
	// MaxOrigins caps the origins in an announce response (default 2).
	MaxOrigins int `yaml:"max_origins"`
	// CandidateSample is how many random peers of the swarm are scored
	// for each announce (default 4 × HandoutLimit). It bounds the work of
	// an announce in a large swarm.
	CandidateSample int `yaml:"candidate_sample"`
	// OriginHandouts is how many requesters each origin is handed out to
	// per announce interval, over every swarm (default 16; negative means
	// no bound). A requester with no other peer to try gets an origin
	// anyway; see handout.OriginBudget.
	OriginHandouts int `yaml:"origin_handouts"`
	// FreshFraction and LocalFraction tune the handout policy; see
	// handout.Policy. Negative means none.
	FreshFraction float64 `yaml:"fresh_fraction"`
	LocalFraction float64 `yaml:"local_fraction"`
	// ShutdownTimeout bounds the wait for requests in flight when Serve's
	// context ends (default 10s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// WithDefaults returns c with zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = DefaultAnnounceInterval
	}
	if c.PeerTTL == 0 {
		c.PeerTTL = DefaultPeerTTLIntervals * c.AnnounceInterval
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = c.PeerTTL / 3
	}
	if c.HandoutLimit == 0 {
		c.HandoutLimit = handout.DefaultLimit
	}
	if c.MaxOrigins == 0 {
		c.MaxOrigins = handout.DefaultMaxOrigins
	}
	if c.OriginHandouts == 0 {
		c.OriginHandouts = handout.DefaultOriginHandouts
	}
	if c.CandidateSample == 0 {
		c.CandidateSample = DefaultSampleFactor * c.HandoutLimit
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

// Validate reports why c (after defaults) is unusable, wrapping
// ErrBadConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.AnnounceInterval < time.Second || c.AnnounceInterval > time.Hour:
		return fmt.Errorf("%w: announce_interval %v is outside 1s..1h", ErrBadConfig, c.AnnounceInterval)
	case c.AnnounceInterval%time.Second != 0:
		return fmt.Errorf("%w: announce_interval %v is not whole seconds", ErrBadConfig, c.AnnounceInterval)
	case c.PeerTTL < 2*c.AnnounceInterval:
		return fmt.Errorf("%w: peer_ttl %v is below two announce intervals (%v)", ErrBadConfig, c.PeerTTL, c.AnnounceInterval)
	case c.SweepInterval <= 0:
		return fmt.Errorf("%w: sweep_interval %v is not positive", ErrBadConfig, c.SweepInterval)
	case c.CandidateSample < c.HandoutLimit:
		return fmt.Errorf("%w: candidate_sample %d is below handout_limit %d", ErrBadConfig, c.CandidateSample, c.HandoutLimit)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("%w: shutdown_timeout %v is negative", ErrBadConfig, c.ShutdownTimeout)
	}
	if err := c.Policy().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	return nil
}

// OriginBudget returns the bound on origin hand-outs of c (nil: none),
// as the tracker applies it to every announce.
func (c Config) OriginBudget() *handout.OriginBudget {
	c = c.WithDefaults()
	return handout.NewOriginBudget(c.OriginHandouts, c.AnnounceInterval)
}

// Policy returns the handout policy of c.
func (c Config) Policy() handout.Policy {
	return handout.Policy{
		Limit:         c.HandoutLimit,
		MaxOrigins:    c.MaxOrigins,
		FreshFraction: c.FreshFraction,
		LocalFraction: c.LocalFraction,
		// Peers that joined within two announce rounds are fresh.
		FreshAge: 2 * c.AnnounceInterval,
	}.WithDefaults()
}
