// Package scenario describes a testbed run: the blob, the origins, the
// fleet of peers in capacity classes with their links, the events over
// time (late joiners, churn, byzantine peers), and the mode that runs it
// (emulation, real processes in network namespaces, or simulation). A
// Scenario reads from YAML (strict: unknown keys are errors); the common
// knobs can be overridden by flags (Overrides). It also computes the
// fluid lower bound on completion time that runs are compared with.
package scenario

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/config"
	"github.com/p2pd/p2pd/internal/units"
)

// ErrInvalid is wrapped by every error from Validate and Load.
var ErrInvalid = errors.New("scenario: invalid")

// Mode says how a scenario runs.
type Mode string

// The modes.
const (
	// ModeEmu runs tracker, origins and peers in one process, built by the
	// same constructors as p2pd, over real loopback sockets, each peer's
	// link shaped in its transport.
	ModeEmu Mode = "emu"
	// ModeNetns runs real p2pd processes, each in its own network
	// namespace behind a veth pair shaped with tc tbf.
	ModeNetns Mode = "netns"
	// ModeSim runs the tracker's hand-out and the peers' scheduler in
	// virtual time: discrete events, no sockets, no bytes.
	ModeSim Mode = "sim"
)

// Behavior is what a class of peers does besides downloading.
type Behavior string

// The behaviors.
const (
	// Honest peers download, verify and serve.
	Honest Behavior = "honest"
	// Corrupt peers serve chunks with flipped bytes.
	Corrupt Behavior = "corrupt"
	// Liar peers claim every chunk in their bitfields and then cannot
	// serve most of them.
	Liar Behavior = "liar"
	// Stall peers accept chunk requests and never answer them: in
	// emulation their store's reads block; in the simulator an accepted
	// request holds its upload slot, and nothing is sent, until it is
	// cancelled.
	Stall Behavior = "stall"
)

// The event actions.
const (
	// Leave, Kill and Join stop and start peers.
	Leave = "leave"
	Kill  = "kill"
	Join  = "join"
	// TrackerDown stops the tracker, losing its state; TrackerUp starts a
	// new, empty one on the same address. OriginRestart stops every
	// origin and starts it again on its data directory. They take no
	// count and work in emu mode only.
	TrackerDown   = "tracker-down"
	TrackerUp     = "tracker-up"
	OriginRestart = "origin-restart"
)

// Link is a host's emulated network attachment.
type Link struct {
	// Up and Down are capacities in bytes per second ("1Gbit",
	// "125MB/s"); 0 means unlimited.
	Up   units.Rate `yaml:"up" json:"up"`
	Down units.Rate `yaml:"down" json:"down"`
	// Latency is the added one-way delay of everything the host sends;
	// Jitter adds a uniform random [0, Jitter) on top.
	Latency time.Duration `yaml:"latency" json:"latency"`
	Jitter  time.Duration `yaml:"jitter" json:"jitter"`
	// Loss is the fraction of packets lost, in [0, 1). Over TCP the
	// emulation turns it into retransmission delay (see docs/testbed.md).
	Loss float64 `yaml:"loss" json:"loss"`
}

// Origins are the fleet's seeders of last resort.
type Origins struct {
	Count int `yaml:"count" json:"count"`
	Link  `yaml:",inline" json:"link"`
}

// Class is a group of peers that share a link, labels and behavior.
type Class struct {
	Name  string `yaml:"name" json:"name"`
	Count int    `yaml:"count" json:"count"`
	Link  `yaml:",inline" json:"link"`
	// Zones, if set, are assigned to the class's peers round-robin; Racks
	// splits each zone into that many racks ("r0", "r1", ...).
	Zones []string `yaml:"zones" json:"zones,omitempty"`
	Racks int      `yaml:"racks" json:"racks,omitempty"`
	// JoinAt delays the class's first peer; JoinSpread spreads the joins
	// of its peers evenly over that window after JoinAt (late joiners).
	JoinAt     time.Duration `yaml:"join_at" json:"join_at,omitempty"`
	JoinSpread time.Duration `yaml:"join_spread" json:"join_spread,omitempty"`
	Behavior   Behavior      `yaml:"behavior" json:"behavior,omitempty"`
}

// Event changes the fleet at a point in time.
type Event struct {
	At time.Duration `yaml:"at" json:"at"`
	// Action is "leave" (peers stop, gracefully), "kill" (peers stop
	// without a goodbye) or "join" (stopped peers come back, keeping what
	// they stored); or, for the services, "tracker-down",
	// "tracker-up" or "origin-restart" (see TrackerDown).
	Action string `yaml:"action" json:"action"`
	// Count or Fraction (of the class's peers that are running) choose how
	// many; Class restricts the event to one class (default: any honest
	// peer).
	Count    int     `yaml:"count" json:"count,omitempty"`
	Fraction float64 `yaml:"fraction" json:"fraction,omitempty"`
	Class    string  `yaml:"class" json:"class,omitempty"`
	// Incomplete limits leave and kill to peers that have not finished.
	Incomplete bool `yaml:"incomplete" json:"incomplete,omitempty"`
}

// Blob is the blob the fleet fetches.
type Blob struct {
	Size units.Size `yaml:"size" json:"size"`
	// Chunk, if set, is the average chunk size ("1MiB", a power of two);
	// the minimum and maximum are a quarter and four times it. Chunker
	// sets all three in bytes instead.
	Chunk   units.Size     `yaml:"chunk" json:"chunk,omitempty"`
	Chunker chunker.Config `yaml:"chunker" json:"chunker"`
	// Base, if set, makes the run a delta: the blob is version 2 of a
	// blob whose version 1 every peer already holds (see Base).
	Base *Base `yaml:"base" json:"base,omitempty"`
}

// Base describes version 1 of a delta run's blob. Version 1 is the
// seed's stream of Blob.Size bytes; version 2 is version 1 with Changed
// of its bytes overwritten by other bytes, in Regions regions of equal
// length, one at a seeded place in each of Regions equal slices of the
// blob. The origins hold both versions, every peer starts holding
// version 1's chunks (its store pre-loaded, v1 pinned), and the fleet
// pulls version 2. Emu and sim modes only.
type Base struct {
	// Changed is the fraction of the blob overwritten, in (0, 1).
	Changed float64 `yaml:"changed" json:"changed"`
	// Regions is how many places it is overwritten in (default 1).
	Regions int `yaml:"regions" json:"regions,omitempty"`
}

// Conns caps every peer's connections: peer.Config's MaxConns (the
// peers it dials) and MaxInbound (the peers that may dial it). 0 keeps
// the engine's defaults (30 and 256). In emulation every connection
// costs the process two file descriptors (both its ends are in the
// process), so a fleet of 1,000 peers needs fewer than the defaults.
// Emu, netns and sim modes apply them alike; origins keep the defaults.
type Conns struct {
	Max     int `yaml:"max" json:"max,omitempty"`
	Inbound int `yaml:"inbound" json:"inbound,omitempty"`
}

// Scenario is one testbed run.
type Scenario struct {
	Name    string  `yaml:"name" json:"name"`
	Mode    Mode    `yaml:"mode" json:"mode"`
	Seed    uint64  `yaml:"seed" json:"seed"`
	Blob    Blob    `yaml:"blob" json:"blob"`
	Origins Origins `yaml:"origins" json:"origins"`
	Classes []Class `yaml:"classes" json:"classes"`
	Events  []Event `yaml:"events" json:"events,omitempty"`
	// Conns caps every peer's connections (default: the engine's).
	Conns   Conns    `yaml:"conns" json:"conns,omitzero"`
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Sample is the period of the time series (default 250ms, or Bound/200
	// when that is longer).
	Sample time.Duration `yaml:"sample" json:"sample,omitempty"`
	// Baselines to run on the same links after the main run:
	// "origin-only" (every peer downloads from the origin over HTTP) and
	// "bittorrent" (anacrolix/torrent).
	Baselines []string `yaml:"baselines" json:"baselines,omitempty"`
}

// Duration is a time.Duration that YAML and JSON spell "90s".
type Duration = time.Duration

// Defaults used by Default and WithDefaults.
const (
	DefaultPeers    = 20
	DefaultBlobSize = 64 << 20
	DefaultRate     = 125_000_000 // 1 Gbit/s
	DefaultLatency  = time.Millisecond
	DefaultTimeout  = 10 * time.Minute
	DefaultSample   = 250 * time.Millisecond
)

// Default is the scenario `p2pctl testbed run` uses with no file: a flash
// crowd of DefaultPeers peers on 1 Gbit/s links with 1 ms latency, one
// origin on the same link, a 64 MiB blob, emulation mode.
func Default() Scenario {
	link := Link{Up: DefaultRate, Down: DefaultRate, Latency: DefaultLatency}
	return Scenario{
		Name:    "flash-crowd",
		Mode:    ModeEmu,
		Seed:    1,
		Blob:    Blob{Size: DefaultBlobSize},
		Origins: Origins{Count: 1, Link: link},
		Classes: []Class{{Name: "default", Count: DefaultPeers, Link: link}},
	}
}

// Load reads a scenario from a YAML file over Default's values for the
// keys it leaves out, except that classes, events and baselines, when
// given, replace the defaults whole.
func Load(path string) (Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, fmt.Errorf("scenario: %w", err)
	}
	return Parse(b)
}

// Parse is Load for YAML bytes.
func Parse(b []byte) (Scenario, error) {
	s := Default()
	s.Classes = nil
	if err := config.Decode(b, &s); err != nil {
		return Scenario{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if s.Classes == nil {
		s.Classes = Default().Classes
	}
	s = s.WithDefaults()
	return s, s.Validate()
}

// WithDefaults fills zero fields: timeout, sample period, chunker sizes,
// class names and behaviors.
func (s Scenario) WithDefaults() Scenario {
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Sample == 0 {
		s.Sample = DefaultSample
	}
	if s.Mode == "" {
		s.Mode = ModeEmu
	}
	if s.Blob.Chunk > 0 {
		avg := int(s.Blob.Chunk)
		s.Blob.Chunker = chunker.Config{MinSize: avg / 4, AvgSize: avg, MaxSize: avg * 4}
		s.Blob.Chunk = 0
	}
	s.Blob.Chunker = s.Blob.Chunker.WithDefaults()
	s.Classes = append([]Class(nil), s.Classes...)
	for i := range s.Classes {
		c := &s.Classes[i]
		if c.Name == "" {
			c.Name = fmt.Sprintf("class%d", i)
		}
		if c.Behavior == "" {
			c.Behavior = Honest
		}
	}
	return s
}

// safeName reports whether name can be a file name on its own: no path
// separator, no "." or "..", nothing but [A-Za-z0-9._-].
func safeName(name string) bool {
	if name == "" || len(name) > 64 || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Validate reports why s cannot run, wrapping ErrInvalid.
func (s Scenario) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	switch s.Mode {
	case ModeEmu, ModeNetns, ModeSim:
	default:
		return bad("mode %q: want emu, netns or sim", s.Mode)
	}
	if s.Blob.Size <= 0 {
		return bad("blob size %d: want a positive size", s.Blob.Size)
	}
	if err := s.Blob.Chunker.Validate(); err != nil {
		return bad("blob chunker: %v", err)
	}
	if b := s.Blob.Base; b != nil {
		if !(b.Changed > 0 && b.Changed < 1) || b.Regions < 0 || b.Regions > maxBaseRegions {
			return bad("blob base: changed %v must be in (0, 1) and regions %d in 0..%d", b.Changed, b.Regions, maxBaseRegions)
		}
		if s.Mode == ModeNetns || len(s.Baselines) > 0 {
			return bad("blob base (a delta run) runs in emu and sim modes, without baselines")
		}
		if n := b.regions(); int64(s.Blob.Size) < int64(n) || float64(s.Blob.Size)*b.Changed < float64(n) {
			return bad("blob base: %d regions do not fit %v of %d bytes", n, b.Changed, s.Blob.Size)
		}
	}
	if s.Conns.Max < 0 || s.Conns.Inbound < 0 {
		return bad("conns: max %d and inbound %d must not be negative", s.Conns.Max, s.Conns.Inbound)
	}
	if s.Origins.Count < 1 {
		return bad("origins count %d: want at least 1", s.Origins.Count)
	}
	if err := s.Origins.Link.validate("origins"); err != nil {
		return err
	}
	if s.Origins.Up <= 0 {
		return bad("origins up: the origin's upload capacity must be set (the bound needs it)")
	}
	if len(s.Classes) == 0 {
		return bad("no classes of peers")
	}
	names := map[string]bool{}
	honest := 0
	for _, c := range s.Classes {
		if names[c.Name] {
			return bad("class %q is defined twice", c.Name)
		}
		// Peers' data directories, configs and logs are named after
		// their class: a name must not reach outside the run's directory.
		if !safeName(c.Name) {
			return bad("class %q: a name is 1..64 letters, digits, '-', '_' or '.', and not . or ..", c.Name)
		}
		names[c.Name] = true
		if c.Count < 0 {
			return bad("class %q: count %d is negative", c.Name, c.Count)
		}
		if err := c.Link.validate("class " + c.Name); err != nil {
			return err
		}
		switch c.Behavior {
		case Honest:
			honest += c.Count
		case Corrupt, Liar, Stall:
		default:
			return bad("class %q: behavior %q: want honest, corrupt, liar or stall", c.Name, c.Behavior)
		}
		if c.Racks < 0 || c.JoinAt < 0 || c.JoinSpread < 0 {
			return bad("class %q: racks, join_at and join_spread must not be negative", c.Name)
		}
	}
	if honest == 0 {
		return bad("no honest peers: nothing to measure")
	}
	if s.Mode == ModeNetns && s.NumPeers()+s.Origins.Count > MaxNetnsHosts {
		return bad("netns mode runs at most %d hosts (peers and origins), not %d", MaxNetnsHosts, s.NumPeers()+s.Origins.Count)
	}
	for i, e := range s.Events {
		switch e.Action {
		case Leave, Kill, Join:
		case TrackerDown, TrackerUp, OriginRestart:
			if s.Mode != ModeEmu {
				return bad("event %d: action %s runs in emu mode only", i, e.Action)
			}
			if e.At < 0 || e.Count != 0 || e.Fraction != 0 || e.Class != "" || e.Incomplete {
				return bad("event %d: %s takes only at ≥ 0", i, e.Action)
			}
			continue
		default:
			return bad("event %d: action %q: want leave, kill, join, tracker-down, tracker-up or origin-restart", i, e.Action)
		}
		if e.At < 0 || e.Count < 0 || e.Fraction < 0 || e.Fraction > 1 || (e.Count == 0) == (e.Fraction == 0) {
			return bad("event %d: want at ≥ 0 and exactly one of count > 0 or fraction in (0, 1]", i)
		}
		if e.Class != "" && !names[e.Class] {
			return bad("event %d: unknown class %q", i, e.Class)
		}
	}
	for _, b := range s.Baselines {
		if b != "origin-only" && b != "bittorrent" {
			return bad("baseline %q: want origin-only or bittorrent", b)
		}
	}
	if s.Timeout <= 0 || s.Sample <= 0 {
		return bad("timeout and sample must be positive")
	}
	return nil
}

// MaxNetnsHosts bounds the processes netns mode starts.
const MaxNetnsHosts = 64

func (l Link) validate(what string) error {
	if l.Up < 0 || l.Down < 0 || l.Latency < 0 || l.Jitter < 0 {
		return fmt.Errorf("%w: %s: rates and delays must not be negative", ErrInvalid, what)
	}
	if l.Loss < 0 || l.Loss >= 1 || math.IsNaN(l.Loss) {
		return fmt.Errorf("%w: %s: loss %v is outside [0, 1)", ErrInvalid, what, l.Loss)
	}
	return nil
}

// NumPeers counts the peers of every class.
func (s Scenario) NumPeers() int {
	n := 0
	for _, c := range s.Classes {
		n += c.Count
	}
	return n
}

// NumHonest returns the number of honest peers (classes whose behavior
// is Honest, or not set), origins excluded.
func (s Scenario) NumHonest() int {
	n := 0
	for _, c := range s.Classes {
		if c.Behavior == Honest || c.Behavior == "" {
			n += c.Count
		}
	}
	return n
}

// Peer is one peer of the fleet, as Expand lays it out.
type Peer struct {
	Index    int
	Name     string // "<class>-<i>"
	Class    string
	Link     Link
	Zone     string
	Rack     string
	JoinAt   time.Duration
	Behavior Behavior
}

// Expand lists the fleet's peers, class by class, with their labels and
// join times.
func (s Scenario) Expand() []Peer {
	var out []Peer
	for _, c := range s.Classes {
		for i := range c.Count {
			p := Peer{Index: len(out), Name: fmt.Sprintf("%s-%d", c.Name, i), Class: c.Name, Link: c.Link, JoinAt: c.JoinAt, Behavior: c.Behavior}
			if c.Count > 1 && c.JoinSpread > 0 {
				p.JoinAt += time.Duration(int64(c.JoinSpread) * int64(i) / int64(c.Count-1))
			}
			if len(c.Zones) > 0 {
				z := i % len(c.Zones)
				p.Zone = c.Zones[z]
				if c.Racks > 0 {
					p.Rack = fmt.Sprintf("r%d", (i/len(c.Zones))%c.Racks)
				}
			}
			out = append(out, p)
		}
	}
	return out
}

// Small is a flash crowd of n peers on links slow enough that the links,
// not the machine, set the pace even under the race detector: a 4 MiB
// blob in 64 KiB chunks, one origin and the peers at 4 MB/s (32 Mbit/s),
// 2 ms latency. Its bound is 1.05 s (F/u_s and F/d). Tests of every mode
// use it.
func Small(n int) Scenario {
	s := Default()
	s.Name = "small"
	s.Blob = Blob{Size: 4 << 20, Chunker: chunker.Config{MinSize: 16 << 10, AvgSize: 64 << 10, MaxSize: 256 << 10}}
	link := Link{Up: 4_000_000, Down: 4_000_000, Latency: 2 * time.Millisecond}
	s.Origins = Origins{Count: 1, Link: link}
	s.Classes = []Class{{Name: "peer", Count: n, Link: link}}
	s.Timeout = 2 * time.Minute
	return s.WithDefaults()
}
