// Package shape emulates a host's network link on its TCP connections: an
// upload and a download capacity, as token buckets shared by all of the
// host's connections, and a one-way latency (with jitter) added to
// everything the host sends. Packet loss is turned into the throughput
// TCP achieves under it (the Mathis et al. bound, MSS/(RTT·√(2p/3))),
// since over TCP a loss shows up as retransmission delay rather than as
// missing bytes.
//
// The testbed gives each emulated peer a Link; p2pd uses the same code for
// a host-wide cap on upload and download rates. Each end of a connection
// wraps its own side with its own Link: the sender's upload bucket and
// latency pace what it writes, the receiver's download bucket what it
// reads.
package shape

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config describes a link. Zero rates are unlimited.
type Config struct {
	// Up and Down are bytes per second.
	Up, Down int64
	// Latency is added to everything sent; Jitter adds a uniform random
	// [0, Jitter) per write, never reordering bytes.
	Latency, Jitter time.Duration
	// Loss is the packet loss rate in [0, 1), turned into a cap on the
	// upload rate (see the package comment).
	Loss float64
	// Seed seeds the jitter.
	Seed uint64
}

// MSS is the segment size the loss model assumes.
const MSS = 1448

// burstFor is the token bucket depth for a rate: 10 ms worth, at least
// 64 KiB (a write bigger than the burst is paced in pieces).
func burstFor(r int64) int { return int(max(r/100, 64<<10)) }

// Link is one host's emulated attachment. It is safe for concurrent use.
type Link struct {
	cfg      Config
	up, down *rate.Limiter
	queueCap int // bytes a connection's delay line holds at most
	mu       sync.Mutex
	rng      *rand.Rand
}

// New returns a Link for cfg, or nil when cfg shapes nothing (Wrap on a
// nil Link returns the connection unchanged).
func New(cfg Config) *Link {
	up := cfg.Up
	if cfg.Loss > 0 {
		rtt := 2 * cfg.Latency
		if rtt <= 0 {
			rtt = 100 * time.Microsecond
		}
		mathis := int64(MSS / (rtt.Seconds() * math.Sqrt(2*cfg.Loss/3)))
		if up == 0 || mathis < up {
			up = max(mathis, 1)
		}
	}
	if up == 0 && cfg.Down == 0 && cfg.Latency == 0 && cfg.Jitter == 0 {
		return nil
	}
	l := &Link{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), queueCap: maxQueued}
	if up > 0 {
		l.up = rate.NewLimiter(rate.Limit(up), burstFor(up))
		l.queueCap = queueFor(up, cfg.Latency+cfg.Jitter)
	}
	if cfg.Down > 0 {
		l.down = rate.NewLimiter(rate.Limit(cfg.Down), burstFor(cfg.Down))
	}
	return l
}

// UpRate returns the effective upload rate in bytes per second (after the
// loss cap), 0 if unlimited.
func (l *Link) UpRate() int64 {
	if l == nil || l.up == nil {
		return 0
	}
	return int64(l.up.Limit())
}

// Wrap returns c with this link's shaping on this end. A nil Link
// returns c.
func (l *Link) Wrap(c net.Conn) net.Conn {
	if l == nil {
		return c
	}
	sc := &conn{Conn: c, l: l}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	if l.cfg.Latency > 0 || l.cfg.Jitter > 0 {
		sc.q = newDelayLine(l, c)
	}
	return sc
}

func (l *Link) delay() time.Duration {
	d := l.cfg.Latency
	if l.cfg.Jitter > 0 {
		l.mu.Lock()
		d += time.Duration(l.rng.Int64N(int64(l.cfg.Jitter)))
		l.mu.Unlock()
	}
	return d
}

// wait takes n tokens from lim, in pieces no larger than its burst.
func wait(ctx context.Context, lim *rate.Limiter, n int) error {
	if lim == nil {
		return nil
	}
	b := lim.Burst()
	for n > 0 {
		k := min(n, b)
		if err := lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// conn is one end of a shaped connection.
type conn struct {
	net.Conn
	l    *Link
	q    *delayLine // nil without latency
	once sync.Once
	// ctx is cancelled by Close, ending waits for tokens.
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *conn) Read(p []byte) (int, error) {
	if c.l.down != nil && len(p) > c.l.down.Burst() {
		p = p[:c.l.down.Burst()]
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.l.down != nil {
		if werr := wait(c.ctx, c.l.down, n); werr != nil && err == nil {
			err = net.ErrClosed
		}
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := len(p)
		if c.l.up != nil {
			k = min(k, c.l.up.Burst())
			if err := wait(c.ctx, c.l.up, k); err != nil {
				return written, net.ErrClosed
			}
		}
		var err error
		if c.q != nil {
			err = c.q.push(p[:k])
		} else {
			_, err = c.Conn.Write(p[:k])
		}
		if err != nil {
			return written, err
		}
		written += k
		p = p[k:]
	}
	return written, nil
}

// Close lets the delay line send what it holds, for at most the link's
// latency and jitter plus closeGrace, and closes the connection.
func (c *conn) Close() error {
	var err error
	c.once.Do(func() {
		c.cancel()
		if c.q != nil {
			c.q.close(c.l.cfg.Latency + c.l.cfg.Jitter + closeGrace)
		}
		err = c.Conn.Close()
	})
	return err
}

// closeGrace is how long Close waits, beyond the latency, for queued bytes
// to go out.
const closeGrace = 100 * time.Millisecond

// CloseWrite half-closes after the delay line drains, when the
// underlying connection supports it.
func (c *conn) CloseWrite() error {
	if c.q != nil {
		c.q.flush()
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("shape: connection cannot half-close")
}

// maxQueued bounds the bytes a delay line holds on a link without an
// upload rate: writers block beyond it.
const maxQueued = 8 << 20

// queueFor bounds the bytes a delay line holds on a link of up bytes/s
// and the given delay: what the link sends in the delay (its
// bandwidth-delay product, so that the line never holds the link back),
// plus a burst. Upload tokens are taken before bytes enter the line, so
// whatever it holds beyond that has left the host in the emulation but
// not yet reached the peer: with 8 MiB per connection, a 5 Mbit/s link
// queued 13 s of data on a connection whose receiver was slow, and
// requests, Haves and manifests waited behind it. A real link's queue
// is a small fraction of a second, and TCP backs off to fit.
func queueFor(up int64, delay time.Duration) int {
	bdp := float64(up) * delay.Seconds()
	return int(min(float64(burstFor(up))+bdp, maxQueued))
}

type segment struct {
	b  []byte
	at time.Time
}

// delayLine holds written bytes until their release time, then writes
// them to the connection in order, from its own goroutine.
type delayLine struct {
	l      *Link
	c      net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	segs   []segment
	queued int
	last   time.Time
	err    error
	closed bool
	stop   chan struct{} // closed by close: abandon a pending release
}

func newDelayLine(l *Link, c net.Conn) *delayLine {
	q := &delayLine{l: l, c: c, stop: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

func (q *delayLine) push(p []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.queued > 0 && q.queued+len(p) > q.l.queueCap && q.err == nil && !q.closed {
		q.cond.Wait()
	}
	if q.err != nil {
		return q.err
	}
	if q.closed {
		return net.ErrClosed
	}
	at := time.Now().Add(q.l.delay())
	if at.Before(q.last) {
		at = q.last // jitter never reorders
	}
	q.last = at
	q.segs = append(q.segs, segment{append([]byte(nil), p...), at})
	q.queued += len(p)
	q.cond.Broadcast()
	return nil
}

func (q *delayLine) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		for len(q.segs) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.segs) == 0 {
			q.mu.Unlock()
			return
		}
		s := q.segs[0]
		q.mu.Unlock()
		if d := time.Until(s.at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-q.stop:
				return
			}
		}
		_, err := q.c.Write(s.b)
		q.mu.Lock()
		q.segs = q.segs[1:]
		q.queued -= len(s.b)
		if err != nil && q.err == nil {
			q.err = err
			q.segs = nil
			q.queued = 0
		}
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// flush waits until everything queued has been written.
func (q *delayLine) flush() {
	q.mu.Lock()
	for len(q.segs) > 0 && q.err == nil {
		q.cond.Wait()
	}
	q.mu.Unlock()
}

// close waits up to grace for the queued bytes to go out, then stops the
// goroutine; what is left is dropped, as a reset connection would.
func (q *delayLine) close(grace time.Duration) {
	flushed := make(chan struct{})
	go func() { q.flush(); close(flushed) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-flushed:
	case <-t.C:
	}
	q.mu.Lock()
	q.closed = true
	if q.err == nil {
		q.err = net.ErrClosed // wakes flush and blocked writers
	}
	q.cond.Broadcast()
	q.mu.Unlock()
	close(q.stop)
	<-flushed
}
