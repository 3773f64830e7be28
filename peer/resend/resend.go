// Package resend is an uploader's rule for sending a chunk it has already
// sent to another peer: the rule that keeps an origin from spending its
// link on second copies while a flash crowd could pass the first ones on.
// The engine (peer.Engine.claimUpload) and the simulator (testbed/sim)
// both decide with it, so the simulated origin behaves as the real one.
//
// Three parts, all for an uploader with a resend window (an origin):
//
//   - The resend window: within Window of sending chunk k to one peer, a
//     request for k from another peer is deferred (the requester fetches
//     it from the first once that one announces it).
//   - The first round: while some chunk of a blob has never been sent, a
//     request for a chunk of it that has been sent (or is being sent) to
//     another peer is deferred, however long ago that was. On a slow link a
//     chunk takes the swarm longer than any fixed window to spread, and a
//     second copy sent then delays the first copy of a chunk nobody has:
//     in an emulated fan-out to 1,000 peers on 0.25 Mbit/s links, 40% of
//     the origin's first 150 s went to second copies (docs/benchmarks.md,
//     "Session 8").
//   - Escalation: a request marked escalated (the requester could not get
//     the chunk from the peers that advertise it, or kept being deferred
//     while none did) is served regardless, and finds the peer the chunk
//     went to within the window hoarding it (Hoarder, for HoardWindows
//     windows).
//
// Times are instants as durations from any fixed origin (the engine's
// clock since it started, the simulator's virtual time). Nothing here
// blocks or locks: callers serialise.
package resend

import (
	"math/bits"
	"time"
)

// HoardWindows is how many resend windows a peer found hoarding stays a
// hoarder.
const HoardWindows = 3

// Kind is what a claim is for.
type Kind uint8

const (
	// Request: a peer asks for the chunk; the answer may be no.
	Request Kind = iota
	// Escalated: a request marked escalated; always yes.
	Escalated
	// Sent: the chunk's last byte went out; always yes, and the window
	// counts from now.
	Sent
)

// RequestKind is the kind of claim a request makes: Escalated if it is
// marked so, else Request.
func RequestKind(escalated bool) Kind {
	if escalated {
		return Escalated
	}
	return Request
}

type record[P comparable] struct {
	to P
	at time.Duration
}

// Claims holds an uploader's record of recent sends, keyed by chunk (K)
// and naming peers by P. The zero value is not usable; see New.
type Claims[K, P comparable] struct {
	window    time.Duration
	sent      map[K]record[P]
	hoarders  map[P]time.Duration
	lastSweep time.Duration
}

// New returns Claims with the resend window window; a window of 0 or
// less turns every rule off (Claim always says yes).
func New[K, P comparable](window time.Duration) *Claims[K, P] {
	return &Claims[K, P]{window: window, sent: make(map[K]record[P]), hoarders: make(map[P]time.Duration)}
}

// On reports whether the rules apply at all (the window is positive).
func (c *Claims[K, P]) On() bool { return c.window > 0 }

// Claim decides whether chunk k, index i of the blob whose first round is
// r (nil: no round, as for a chunk of no known blob), may go to peer to
// at now, and if so records it, as the chunk's latest send and, in r, as
// sent. See the package comment for the rules. forced reports an
// escalated request that a plain one would not have got.
func (c *Claims[K, P]) Claim(k K, i int, r *Round, to P, now time.Duration, kind Kind) (ok, forced bool) {
	if c.window <= 0 {
		return true, false
	}
	if r != nil {
		r.expire(now, HoardWindows*c.window)
	}
	rec, known := c.sent[k]
	other := known && rec.to != to
	inWindow := other && now-rec.at < c.window
	firstRound := r != nil && !r.Done() && r.Has(i) && (other || !known)
	switch kind {
	case Request:
		if inWindow || firstRound {
			return false, false
		}
	case Escalated:
		forced = inWindow || firstRound
		if inWindow {
			c.hoarders[rec.to] = now
		}
	}
	c.sent[k] = record[P]{to: to, at: now}
	if r != nil {
		r.mark(i, now)
	}
	c.sweep(now)
	return true, forced
}

// sweep forgets, once per window, the sends older than the window and
// the hoarders older than HoardWindows windows.
func (c *Claims[K, P]) sweep(now time.Duration) {
	if now-c.lastSweep <= c.window {
		return
	}
	c.lastSweep = now
	for k, r := range c.sent {
		if now-r.at >= c.window {
			delete(c.sent, k)
		}
	}
	for p, at := range c.hoarders {
		if now-at >= HoardWindows*c.window {
			delete(c.hoarders, p)
		}
	}
}

// Hoarder reports whether peer p was found hoarding (an escalated request
// for a chunk p had been sent within the window) in the last HoardWindows
// windows.
func (c *Claims[K, P]) Hoarder(p P, now time.Duration) bool {
	at, ok := c.hoarders[p]
	return ok && now-at < HoardWindows*c.window
}

// Round is the first round of one blob's chunks at one uploader: which
// chunks have been sent (or are being sent) at least once. It is done when
// every chunk has been. A round that has seen no send start or end for
// HoardWindows resend windows is over, done or not, and the next claim
// starts a new one: the crowd it served is gone or has what it wanted
// from this uploader (a fleet that held most of a blob already asks the
// origin for the changed chunks only), and the next crowd gets a first
// round of its own.
type Round struct {
	sent []uint64
	skip []uint64      // chunks that are never asked for by themselves (Skip)
	n    int           // chunks
	left int           // chunks never sent, less those skipped
	last time.Duration // the last send started or ended
	// fresh: nothing sent since the round began.
	fresh bool
}

// NewRound returns the round of a blob of n chunks, none sent.
func NewRound(n int) *Round {
	return &Round{sent: make([]uint64, (n+63)/64), skip: make([]uint64, (n+63)/64), n: n, left: n, fresh: true}
}

// Skip takes chunk i out of the round, in this one and the next: it
// repeats an earlier chunk of the blob (a zero-filled region, say), so a
// request for it is a request for that one, and it would never be sent
// by itself.
func (r *Round) Skip(i int) {
	if i < 0 || i >= r.n || r.skip[i/64]&(1<<(i%64)) != 0 {
		return
	}
	r.skip[i/64] |= 1 << (i % 64)
	if !r.Has(i) {
		r.sent[i/64] |= 1 << (i % 64)
		r.left--
	}
}

// Done reports whether every chunk has been sent at least once.
func (r *Round) Done() bool { return r.left == 0 }

// Has reports whether chunk i has been sent (or is being sent).
func (r *Round) Has(i int) bool {
	return i >= 0 && i < r.n && r.sent[i/64]&(1<<(i%64)) != 0
}

// mark records chunk i as sent at now. Out-of-range indexes count as
// activity only.
func (r *Round) mark(i int, now time.Duration) {
	r.last, r.fresh = now, false
	if i < 0 || i >= r.n || r.Has(i) {
		return
	}
	r.sent[i/64] |= 1 << (i % 64)
	r.left--
}

// expire starts a new round if the last send started or ended idle ago.
func (r *Round) expire(now, idle time.Duration) {
	if now-r.last < idle || r.fresh {
		return
	}
	r.fresh = true
	r.left = r.n
	for k, w := range r.skip {
		r.sent[k] = w
		r.left -= bits.OnesCount64(w)
	}
}
