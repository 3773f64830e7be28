package peer

import (
	"fmt"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Defaults for the zero fields of a Config.
const (
	DefaultListenAddr       = "/ip4/127.0.0.1/tcp/0"
	DefaultIdentityFileName = "identity.key"
	DefaultMaxConns         = 30
	DefaultMaxInbound       = 256
	DefaultUploadSlots      = 4
	DefaultOriginSlots      = 16
	DefaultResendWindow     = 10 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultManifestTimeout  = 30 * time.Second
	DefaultOriginGrace      = 250 * time.Millisecond
	DefaultDialTimeout      = 10 * time.Second
	DefaultPieceSize        = 64 << 10
	DefaultPutWorkers       = 8
	DefaultBanDuration      = time.Hour
	DefaultPenaltyThreshold = 3
	DefaultMaxInflight      = 8
	DefaultMaxInflightTotal = 4
)

// Config configures an Engine. The zero value of every field selects its
// default; WithDefaults spells them out.
type Config struct {
	// ListenAddrs are the multiaddrs the host listens on (default
	// /ip4/127.0.0.1/tcp/0). A port of 0 picks a free one; Engine.Addrs
	// tells which.
	ListenAddrs []string `yaml:"listen_addrs"`
	// EnableQUIC adds the QUIC transport (UDP) next to TCP. The listen
	// addresses must then include a /quic-v1 one to accept QUIC.
	EnableQUIC bool `yaml:"enable_quic"`
	// PSK, if set, makes the host part of a private network: every
	// connection, dialled or accepted, is encrypted with this key before
	// the TLS handshake, so only hosts that hold it can connect. libp2p's
	// QUIC transport does not support it: EnableQUIC must then be off.
	// The daemon loads it from security.psk_file; it is never in YAML.
	PSK []byte `yaml:"-"`
	// IdentityFile holds the host's private key, created on first start,
	// so that the peer ID survives restarts. Default: identity.key in the
	// store's directory.
	IdentityFile string `yaml:"identity_file"`
	// Role is what the engine announces itself as: "peer" (default) or
	// "origin", a seeder of last resort.
	Role trackerwire.Role `yaml:"role"`
	// Zone and Rack are topology labels sent to the tracker, which prefers
	// handing out peers that share them.
	Zone string `yaml:"zone"`
	Rack string `yaml:"rack"`
	// MaxConns caps the peers the engine dials (default 30); MaxInbound
	// caps the peers that may dial it (default 256).
	MaxConns   int `yaml:"max_conns"`
	MaxInbound int `yaml:"max_inbound"`
	// UploadSlots caps the chunk requests served at once, over all peers
	// (default 4, 16 for an origin). A request beyond it is answered
	// Reject{Busy}, and the requester backs off. The slots share the
	// upload link, so each accepted chunk arrives at about 1/UploadSlots
	// of it; few slots make each copy whole, and servable by its
	// receiver, sooner, which is what spreads a chunk through a flash
	// crowd (docs/testbed-sim.md, "Upload slots": 64 slots made a
	// simulated 1,000-peer fan-out 2.8 times the bound, 8 slots 1.6).
	// The default matches Sched.MaxInflight's, so that a peer receives
	// about as many chunks at once as it sends, and a chunk crosses each
	// hop at a quarter of a link, not an eighth (docs/benchmarks.md,
	// "Session 14").
	// An origin's slots keep a flash crowd from fetching the same chunks
	// from it at once: the requests it turns away go to peers instead.
	UploadSlots int `yaml:"upload_slots"`
	// ResendWindow: within this time of sending a chunk to one peer
	// (counted from when its last byte went out), a request for it from
	// another peer is answered Reject{Deferred}, so that the second peer
	// fetches it from the first once that one announces it, and asks
	// the origin for another chunk meanwhile (sched.FailDeferred). It
	// keeps an origin sending each chunk about once to a flash crowd.
	// Default 10s for an origin (2s let a simulated 100-peer crowd on
	// slow links take 2.2 copies from the origin, 10s 1.3), 0 (off) for
	// a peer; a negative value turns it off. An escalated request for a
	// chunk within the window is served, and finds the peer it went to
	// hoarding: for three windows that peer's requests are deferred
	// while other uploads run, so that the first copies go to peers that
	// pass them on.
	ResendWindow time.Duration `yaml:"resend_window"`
	// UploadRate and DownloadRate cap the chunk bytes per second sent to,
	// and read from, each peer. 0 means unlimited.
	UploadRate   int64 `yaml:"upload_rate"`
	DownloadRate int64 `yaml:"download_rate"`
	// HostUploadRate and HostDownloadRate cap all of the host's TCP
	// traffic, every peer together, protocol overhead included, in bytes
	// per second (0 = unlimited): what keeps a fleet-wide push from
	// flooding a production link. QUIC connections are not capped. With
	// an upload rate (here or from the testbed's link), uploads are
	// paced to it in smaller pieces, so that control frames do not wait
	// behind queued data (see pace.go).
	HostUploadRate   int64 `yaml:"host_upload_rate"`
	HostDownloadRate int64 `yaml:"host_download_rate"`
	// RequestTimeout is how long a manifest request may stay unanswered,
	// and how long a peer may keep its oldest chunk request waiting with
	// no data arriving, before they are retried elsewhere (default 10s;
	// see sched.Config.RequestTimeout). It sets Sched.RequestTimeout
	// unless that is set.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// ManifestTimeout bounds how long Pull looks for a blob's manifest
	// before failing with ErrNotFound (default 30s).
	ManifestTimeout time.Duration `yaml:"manifest_timeout"`
	// OriginGrace: when a pull starts while connected to other peers, an
	// origin's bitfield is held back until those peers have answered with
	// theirs (or, while peers are still being dialed, until the first
	// has), for at most this long (default 250ms), so that the first
	// requests do not go to the origin (a fallback) for chunks the peers
	// hold merely because its answer came first. With no other peer
	// connected or being dialed, origins are used at once.
	OriginGrace time.Duration `yaml:"origin_grace"`
	// DialTimeout bounds connecting to a peer and the protocol handshake
	// (default 10s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// PieceSize is the payload of each Data frame sent (default 64 KiB,
	// at most 1 MiB). The receiver reports progress on a chunk to its
	// scheduler as frames arrive, so a chunk of several pieces that
	// arrives slowly, on a link shared by many uploads, shows that it is
	// moving rather than waiting for the request timeout. Paced uploads
	// (HostUploadRate) use smaller pieces on slow links: about 50 ms of
	// the link, no less than 8 KiB.
	PieceSize int `yaml:"piece_size"`
	// PutWorkers is how many received chunks are verified and written to
	// the store at once (default 8). The store fsyncs every chunk, so
	// writes in parallel are what keeps a fast download going.
	PutWorkers int `yaml:"put_workers"`
	// BanDuration is how long a banned peer is refused (default 1h).
	BanDuration time.Duration `yaml:"ban_duration"`
	// PenaltyThreshold is how many protocol violations (malformed or
	// oversized frames, ...) get a peer banned (default 3).
	PenaltyThreshold int `yaml:"penalty_threshold"`
	// FullVerify makes every pull read the assembled blob back and hash
	// it, even when the tracker vouches for its manifest. By default a
	// pull whose manifest ID matches the one the swarm's origins
	// announced trusts the manifest (the origin made it from the pushed
	// bytes), so the per-chunk SHA-256 checks suffice; a manifest nobody
	// vouched for is always checked against the blob digest.
	FullVerify bool `yaml:"full_verify"`
	// Sched tunes the download scheduler. MaxInflightPerPeer defaults to
	// 8 here (the scheduler's own default is 4), and MaxInflight
	// (requests outstanding over all peers but fallback origins) to 4
	// (the scheduler's own default is no cap; -1 selects that). With no
	// cap a peer with many neighbours fetched dozens of chunks at once,
	// each at a sliver of its link, so every copy took that much longer
	// to become servable. With 4, and 4 upload slots, a simulated
	// 1,000-peer fan-out finished 21% sooner at p50 and 17% at p99, and
	// every shipped testbed scenario sooner at both (docs/benchmarks.md,
	// "Session 14"). A link whose round trip spans several chunk times
	// (a long fat path) needs a deeper cap.
	Sched sched.Config `yaml:"sched"`
	// Announce tunes the tracker announcers.
	Announce trackerclient.AnnouncerConfig `yaml:"announce"`
}

// WithDefaults returns c with zero fields replaced by their defaults.
// IdentityFile stays empty: New fills it from the store's directory.
func (c Config) WithDefaults() Config {
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = []string{DefaultListenAddr}
	}
	if c.Role == "" {
		c.Role = trackerwire.RolePeer
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&c.MaxConns, DefaultMaxConns)
	setInt(&c.MaxInbound, DefaultMaxInbound)
	if c.Role == trackerwire.RoleOrigin {
		setInt(&c.UploadSlots, DefaultOriginSlots)
		setDur(&c.ResendWindow, DefaultResendWindow)
	}
	setInt(&c.UploadSlots, DefaultUploadSlots)
	setInt(&c.PieceSize, DefaultPieceSize)
	setInt(&c.PutWorkers, DefaultPutWorkers)
	setInt(&c.PenaltyThreshold, DefaultPenaltyThreshold)
	setInt(&c.Sched.MaxInflightPerPeer, DefaultMaxInflight)
	setInt(&c.Sched.MaxInflight, DefaultMaxInflightTotal)
	setDur(&c.RequestTimeout, DefaultRequestTimeout)
	setDur(&c.ManifestTimeout, DefaultManifestTimeout)
	setDur(&c.OriginGrace, DefaultOriginGrace)
	setDur(&c.DialTimeout, DefaultDialTimeout)
	setDur(&c.BanDuration, DefaultBanDuration)
	setDur(&c.Sched.RequestTimeout, c.RequestTimeout)
	c.Announce = c.Announce.WithDefaults()
	return c
}

// Validate reports why c (after defaults) cannot be used, wrapping
// ErrBadConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, a...)...)
	}
	for _, a := range c.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return bad("listen address %q: %v", a, err)
		}
	}
	switch {
	case len(c.PSK) > 0 && len(c.PSK) != 32:
		return bad("private network key is %d bytes, want 32", len(c.PSK))
	case len(c.PSK) > 0 && c.EnableQUIC:
		return bad("enable_quic cannot be used with a private network key (security.psk_file): libp2p's QUIC transport does not support private networks; turn QUIC off")
	case !c.Role.Valid():
		return bad("role %q: want %q or %q", c.Role, trackerwire.RolePeer, trackerwire.RoleOrigin)
	case len(c.Zone) > trackerwire.MaxLabelLen || len(c.Rack) > trackerwire.MaxLabelLen:
		return bad("zone and rack are at most %d bytes", trackerwire.MaxLabelLen)
	case c.MaxConns < 0, c.MaxInbound < 0, c.UploadSlots < 0, c.PutWorkers < 0, c.PenaltyThreshold < 0:
		return bad("max_conns, max_inbound, upload_slots, put_workers and penalty_threshold must not be negative")
	case c.UploadRate < 0 || c.DownloadRate < 0:
		return bad("upload_rate %d and download_rate %d must not be negative (0 is unlimited)", c.UploadRate, c.DownloadRate)
	case c.HostUploadRate < 0 || c.HostDownloadRate < 0:
		return bad("host_upload_rate %d and host_download_rate %d must not be negative (0 is unlimited)", c.HostUploadRate, c.HostDownloadRate)
	case c.PieceSize < 0 || c.PieceSize > peerwire.MaxDataPayload:
		return bad("piece_size %d is outside 1..%d", c.PieceSize, peerwire.MaxDataPayload)
	case c.RequestTimeout < 0, c.ManifestTimeout < 0, c.DialTimeout < 0, c.BanDuration < 0, c.OriginGrace < 0:
		return bad("timeouts and durations must not be negative")
	}
	if err := c.Sched.Validate(); err != nil {
		return fmt.Errorf("%w: sched: %w", ErrBadConfig, err)
	}
	if err := c.Announce.Validate(); err != nil {
		return fmt.Errorf("%w: announce: %w", ErrBadConfig, err)
	}
	return nil
}
