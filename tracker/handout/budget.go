package handout

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/p2pd/p2pd/tracker/peerstore"
)

// DefaultOriginHandouts is how many requesters an origin is handed out to
// per window (OriginBudget) by default.
const DefaultOriginHandouts = 16

// maxBudgetEntries bounds the origins an OriginBudget tracks at once;
// beyond it, entries whose window has passed are dropped.
const maxBudgetEntries = 4096

// OriginBudget bounds how many requesters each origin is handed out to
// per window, over every swarm. In a flash crowd every peer announces at
// once and finds nothing at other peers, so without a bound every one of
// them is handed the origin and dials it. On the emulated 1,000-peer
// fan-out (docs/benchmarks.md, "Session 15") the origin then spent the
// first 20 s of its link on ~80 TLS handshakes and ~70 manifests, most
// of them to peers that had the manifest from another peer by the time
// it arrived, and its first chunk reached a peer only after 30 s. With a
// bound, the first requesters get the origin and the rest get peers,
// which pass on what the first ones fetch; a requester left out gets the
// origin at a later announce if it still needs it.
//
// A requester with no other candidate still gets an origin, budget or
// not: it has no one else to ask. The budget is advisory: announces
// handled at the same moment may each take the last place. It is safe for
// concurrent use.
type OriginBudget struct {
	per    int
	window time.Duration

	mu sync.Mutex
	m  map[string]budgetWindow // by origin peer ID
}

type budgetWindow struct {
	start time.Time
	used  int
}

// NewOriginBudget returns a budget of per hand-outs per origin every
// window; per < 0 means no bound, 0 DefaultOriginHandouts. A nil
// *OriginBudget bounds nothing.
func NewOriginBudget(per int, window time.Duration) *OriginBudget {
	if per < 0 || window <= 0 {
		return nil
	}
	if per == 0 {
		per = DefaultOriginHandouts
	}
	return &OriginBudget{per: per, window: window, m: make(map[string]budgetWindow)}
}

// Select is Select under the budget, as the tracker runs it for every
// announce: the origins whose budget is spent are left out of cands
// (filter), and the origins picked are charged (charge). It may shorten
// cands in place. With a nil budget it is Select.
func (b *OriginBudget) Select(req Requester, cands []*peerstore.Record, p Policy, rng *rand.Rand) []*peerstore.Record {
	cands = b.filter(cands, req.Now)
	picked := Select(req, cands, p, rng)
	b.charge(picked, req.Now)
	return picked
}

// filter returns cands without the origins whose budget for now is spent,
// unless cands holds no candidate that is not an origin. It removes them
// in place (slices.DeleteFunc), so it returns cands itself when it removes
// nothing.
func (b *OriginBudget) filter(cands []*peerstore.Record, now time.Time) []*peerstore.Record {
	if b == nil || !slices.ContainsFunc(cands, isPeer) {
		return cands
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.DeleteFunc(cands, func(r *peerstore.Record) bool {
		return r != nil && r.IsOrigin() && b.spentLocked(r.PeerID, now)
	})
}

func isPeer(r *peerstore.Record) bool { return r != nil && !r.IsOrigin() }

// charge counts a hand-out of every origin in picked.
func (b *OriginBudget) charge(picked []*peerstore.Record, now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range picked {
		if r == nil || !r.IsOrigin() {
			continue
		}
		w := b.m[r.PeerID]
		if b.expired(w, now) {
			w = budgetWindow{start: now}
		}
		w.used++
		if _, ok := b.m[r.PeerID]; !ok && len(b.m) >= maxBudgetEntries {
			b.pruneLocked(now)
		}
		b.m[r.PeerID] = w
	}
}

func (b *OriginBudget) expired(w budgetWindow, now time.Time) bool {
	return w.start.IsZero() || now.Sub(w.start) >= b.window
}

func (b *OriginBudget) spentLocked(id string, now time.Time) bool {
	w, ok := b.m[id]
	return ok && !b.expired(w, now) && w.used >= b.per
}

// pruneLocked drops the windows that have passed.
func (b *OriginBudget) pruneLocked(now time.Time) {
	for id, w := range b.m {
		if b.expired(w, now) {
			delete(b.m, id)
		}
	}
}
