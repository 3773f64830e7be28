// Package baseline runs the testbed's reference points in the same
// harness and on the same emulated links as the main run, so that the
// summary can put p2pd's completion times next to theirs:
//
//   - OriginOnly: every peer downloads the whole blob from an origin over
//     HTTP, the origin's upload link shared by all of them.
//   - BitTorrent: one seeder per origin and one leecher per peer, all
//     github.com/anacrolix/torrent clients in this process, trading
//     pieces over loopback TCP.
//
// Each host (origin or peer) gets the internal/shape link that emulation
// mode gives it, built from the scenario with the same seeds, and wraps
// its own side of every connection with it: every connection of a host
// shares its upload and download buckets.
//
// Baselines model the honest fleet only: byzantine classes are skipped
// (they neither download nor serve), and the scenario's events (leave,
// kill, join) are not applied; every honest peer joins at its JoinAt and
// stays until the run ends. Every peer checks the SHA-256 of the blob it
// got against the generated blob's; a mismatch fails the peer.
//
// Bytes are counted on the wire, as each host's application reads or
// writes them: a peer's FromOrigins and FromPeers are what it read from
// origins and from other peers (payload plus a small protocol overhead:
// HTTP headers, BitTorrent message headers, bitfields and haves), and
// OriginEgressBytes is what the origins wrote.
package baseline

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/testbed/fleet"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// Modes, as Result.Mode and scenario.Scenario.Baselines name them.
const (
	ModeOriginOnly = "origin-only"
	ModeBitTorrent = "bittorrent"
)

// Options tune a run beyond its scenario.
type Options struct {
	// Dir is where the hosts' files go (default fleet.DefaultDir(), as in
	// emulation mode: /dev/shm if there is one, so that the links rather
	// than the disk set the pace). A temporary directory is made in it
	// and removed at the end.
	Dir string
	// Logger receives the hosts' logs (default: discarded).
	Logger *slog.Logger
	// Progress receives each sample as the run goes.
	Progress result.Progress
}

// Run runs the baseline named mode (ModeOriginOnly or ModeBitTorrent).
func Run(ctx context.Context, mode string, s scenario.Scenario, o Options) (*result.Result, error) {
	switch mode {
	case ModeOriginOnly:
		return OriginOnly(ctx, s, o)
	case ModeBitTorrent:
		return BitTorrent(ctx, s, o)
	}
	return nil, fmt.Errorf("%w: baseline %q: want %s or %s", scenario.ErrInvalid, mode, ModeOriginOnly, ModeBitTorrent)
}

// DefaultPieceLength is the BitTorrent piece length, and the unit of
// replication, when the scenario's average chunk size is not a power of
// two of at least MinPieceLength.
const (
	DefaultPieceLength = 256 << 10
	MinPieceLength     = 16 << 10
)

// pieceLength is the scenario's average chunk size if it is a power of
// two of at least MinPieceLength, else DefaultPieceLength.
func pieceLength(s scenario.Scenario) int64 {
	n := int64(s.Blob.Chunker.AvgSize)
	if n >= MinPieceLength && n&(n-1) == 0 {
		return n
	}
	return DefaultPieceLength
}

// writeBlob writes the scenario's blob to w and returns its digest.
func writeBlob(s scenario.Scenario, w io.Writer) (chunker.Digest, error) {
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), chunkertest.NewStream(s.Seed, int64(s.Blob.Size))); err != nil {
		return chunker.Digest{}, err
	}
	return chunker.Digest(h.Sum(nil)), nil
}

// errTimeout is the error of a peer that the run's timeout stopped.
var errTimeout = errors.New("did not finish within the timeout")

// member is one honest peer of the fleet.
type member struct {
	spec scenario.Peer
	link *shape.Link
	// Wire bytes this peer read from origins and from other peers.
	fromOrigins, fromPeers atomic.Int64

	mu        sync.Mutex
	joined    time.Time
	done      time.Time
	completed bool
	failed    bool
	err       string
}

func (m *member) finish(done time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.failed, m.err = true, err.Error()
		return
	}
	m.completed, m.done = true, done
}

// baseline is what differs between the baselines; the crowd does the
// rest.
type baseline struct {
	mode string
	// fetch gets the blob for m, which joined just now, and returns when
	// m holds it verified (the time it held it: verification after that
	// does not count) or failed. It must return soon after ctx ends.
	fetch func(ctx context.Context, m *member) (time.Time, error)
	// originEgress is what the origins have written so far.
	originEgress func() int64
	// holders adds to counts[i], for every piece i, the joined peers that
	// hold it (nil: replication is not reported).
	holders func(counts []int)
}

// crowd runs the honest peers of a scenario: it starts each at its join
// time, samples every s.Sample until all have completed or failed or the
// timeout, and fills the result.
type crowd struct {
	s       scenario.Scenario
	log     *slog.Logger
	members []*member
	start   time.Time
}

func newCrowd(s scenario.Scenario, o Options) *crowd {
	c := &crowd{s: s, log: o.Logger}
	for _, p := range s.Expand() {
		if p.Behavior != scenario.Honest {
			continue
		}
		c.members = append(c.members, &member{spec: p, link: s.PeerLink(p)})
	}
	return c
}

// start checks s, fills o's defaults, and calls run with a temporary
// directory in o.Dir that it removes when run returns.
func start(ctx context.Context, s scenario.Scenario, o Options, run func(context.Context, scenario.Scenario, Options, string) (*result.Result, error)) (*result.Result, error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	tmp, err := fleet.TempDir(o.Dir, "p2pd-baseline-")
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	defer os.RemoveAll(tmp)
	return run(ctx, s, o, tmp)
}

// run runs b over the crowd. Every fetch has returned when it returns.
func (c *crowd) run(ctx context.Context, b baseline, progress result.Progress) *result.Result {
	ctx, cancel := context.WithTimeout(ctx, c.s.Timeout)
	defer cancel()
	c.start = time.Now()
	meter := result.NewHostMeter(c.start, nil)
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Go(func() {
			if !scenario.SleepUntil(ctx, c.start.Add(m.spec.JoinAt)) {
				return
			}
			m.mu.Lock()
			m.joined = time.Now()
			m.mu.Unlock()
			done, err := b.fetch(ctx, m)
			switch {
			case err == nil:
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				err = errTimeout
			default:
				c.log.Warn("baseline peer failed", "mode", b.mode, "peer", m.spec.Name, "err", err)
			}
			m.finish(done, err)
		})
	}
	res := &result.Result{
		Scenario:  c.s,
		Mode:      b.mode,
		Bound:     c.s.Bound(),
		BlobBytes: int64(c.s.Blob.Size),
	}
	res.Series = fleet.Sample(ctx, c.s.Sample, meter, progress, func(now time.Time) (result.Sample, bool) {
		// Settled before the sample, so that the last sample shows the
		// crowd settled.
		settled := c.settled()
		return c.sample(now, b), settled
	})
	res.Host = meter.Host(time.Now())
	cancel()
	wg.Wait()
	res.OriginEgressBytes = b.originEgress()
	for _, m := range c.members {
		m.mu.Lock()
		p := result.Peer{
			Name: m.spec.Name, Class: m.spec.Class, Zone: m.spec.Zone, Behavior: m.spec.Behavior,
			JoinS: m.spec.JoinAt.Seconds(), Completed: m.completed, Err: m.err,
			FromPeers: m.fromPeers.Load(), FromOrigins: m.fromOrigins.Load(),
		}
		if m.completed {
			p.DoneS = m.done.Sub(m.joined).Seconds()
		} else {
			p.Failed = true
			if p.Err == "" { // it had not joined yet
				p.Err = errTimeout.Error()
			}
		}
		m.mu.Unlock()
		res.Peers = append(res.Peers, p)
	}
	return res
}

// settled reports whether every peer has completed or failed.
func (c *crowd) settled() bool {
	for _, m := range c.members {
		m.mu.Lock()
		busy := !m.completed && !m.failed
		m.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// sample takes one point of the time series. Live counts the peers that
// have joined and not failed: in both baselines a peer stays up until
// the run ends.
func (c *crowd) sample(now time.Time, b baseline) result.Sample {
	sm := result.Sample{T: now.Sub(c.start).Seconds()}
	for _, m := range c.members {
		sm.OriginBytes += m.fromOrigins.Load()
		sm.PeerBytes += m.fromPeers.Load()
		m.mu.Lock()
		if m.completed {
			sm.Complete++
		}
		if !m.joined.IsZero() && !m.failed {
			sm.Live++
		}
		m.mu.Unlock()
	}
	if b.holders != nil {
		pl := pieceLength(c.s)
		counts := make([]int, (int64(c.s.Blob.Size)+pl-1)/pl)
		b.holders(counts)
		sm.ReplMin, sm.ReplMean, sm.ReplMax = spread(counts)
	}
	return sm
}

// spread returns the minimum, mean and maximum of counts.
func spread(counts []int) (lo int, mean float64, hi int) {
	if len(counts) == 0 {
		return 0, 0, 0
	}
	lo, sum := math.MaxInt, 0
	for _, c := range counts {
		lo, hi = min(lo, c), max(hi, c)
		sum += c
	}
	return lo, float64(sum) / float64(len(counts)), hi
}

// meteredConn counts the bytes read from and written to a connection.
// in says where the bytes read go; it is asked once, after the first
// read that returns data (by then the peer at the other end is known,
// see BitTorrent). A nil counter counts nothing.
type meteredConn struct {
	net.Conn
	in   func(net.Conn) *atomic.Int64
	out  *atomic.Int64
	once sync.Once
	rd   *atomic.Int64
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.in != nil {
		c.once.Do(func() { c.rd = c.in(c.Conn) })
		if c.rd != nil {
			c.rd.Add(int64(n))
		}
	}
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.out != nil {
		c.out.Add(int64(n))
	}
	return n, err
}

// host is one end of the emulated network: it shapes its side of every
// connection with its link and counts the bytes.
type host struct {
	link *shape.Link
	in   func(net.Conn) *atomic.Int64
	out  *atomic.Int64
}

// wrap shapes and meters c (the meter sees what the application reads
// and writes, after shaping).
func (h host) wrap(c net.Conn) net.Conn {
	return &meteredConn{Conn: h.link.Wrap(c), in: h.in, out: h.out}
}

// dial connects to addr over TCP on loopback and wraps the connection.
func (h host) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	return h.wrap(c), nil
}

// listen listens on a free loopback port; accepted connections are
// wrapped.
func (h host) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return hostListener{ln, h}, nil
}

type hostListener struct {
	net.Listener
	h host
}

func (l hostListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.h.wrap(c), nil
}

// to returns a func for host.in that counts every byte read in n.
func to(n *atomic.Int64) func(net.Conn) *atomic.Int64 {
	return func(net.Conn) *atomic.Int64 { return n }
}
