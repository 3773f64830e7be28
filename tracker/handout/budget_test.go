package handout

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/peerstore"
)

func TestOriginBudget(t *testing.T) {
	var s swarm
	orig := origins(&s, 2)
	s.add("empty", 10, trackerwire.RolePeer, 0, 0)
	b := NewOriginBudget(3, 5*time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	// handOut runs one announce as the tracker does and returns how many
	// of each origin it handed out.
	handOut := func(at time.Time, cands []*peerstore.Record) map[string]int {
		t.Helper()
		req := requester(0, 0)
		req.Now = at
		picked := b.Select(req, slices.Clone(cands), Policy{}, rng)
		got := map[string]int{}
		for _, r := range picked {
			if r.IsOrigin() {
				got[r.PeerID]++
			}
		}
		return got
	}
	// Nobody holds anything: every requester is handed both origins
	// (MaxOrigins) until each has been handed out 3 times.
	for i := range 3 {
		if got := handOut(now, s.recs); got["origin-0"] != 1 || got["origin-1"] != 1 {
			t.Fatalf("announce %d: origins handed out %v, want both", i, got)
		}
	}
	if got := handOut(now.Add(4*time.Second), s.recs); len(got) != 0 {
		t.Fatalf("budget spent: origins handed out %v, want none", got)
	}
	// With nobody else to ask, a requester gets the origins all the same.
	if got := handOut(now.Add(4*time.Second), orig); len(got) != 2 {
		t.Fatalf("only origins as candidates: handed out %v, want both", got)
	}
	// The window passes: the origins are handed out again.
	if got := handOut(now.Add(5*time.Second), s.recs); len(got) != 2 {
		t.Fatalf("next window: origins handed out %v, want both", got)
	}
	// filter removes nothing when it can: it returns its input.
	peers := s.recs[2:]
	if got := b.filter(peers, now); &got[0] != &peers[0] || len(got) != len(peers) {
		t.Fatal("Filter copied a candidate list without origins")
	}
}

func TestOriginBudgetOff(t *testing.T) {
	var s swarm
	origins(&s, 1)
	s.add("empty", 3, trackerwire.RolePeer, 0, 0)
	for _, b := range []*OriginBudget{NewOriginBudget(-1, time.Second), NewOriginBudget(1, 0)} {
		if b != nil {
			t.Fatalf("budget %+v: want nil (no bound)", b)
		}
		for range 5 {
			b.charge(s.recs, now)
			if got := b.filter(s.recs, now); len(got) != len(s.recs) {
				t.Fatalf("no budget: Filter kept %d of %d", len(got), len(s.recs))
			}
		}
	}
	if b := NewOriginBudget(0, time.Second); b == nil || b.per != DefaultOriginHandouts {
		t.Fatalf("per 0: %+v, want the default %d", b, DefaultOriginHandouts)
	}
}

func TestOriginBudgetPrunes(t *testing.T) {
	b := NewOriginBudget(1, time.Second)
	var s swarm
	orig := origins(&s, maxBudgetEntries+1)
	b.charge(orig[:maxBudgetEntries], now)
	// A new origin once the old windows have passed drops them.
	b.charge(orig[maxBudgetEntries:], now.Add(time.Second))
	if len(b.m) != 1 {
		t.Fatalf("%d windows kept, want 1", len(b.m))
	}
}
