package handout

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/peerstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const numChunks = 1000

var now = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// swarm builds candidate records.
type swarm struct{ recs []*peerstore.Record }

type peerOpt func(r *peerstore.Record)

func zone(z, rack string) peerOpt { return func(r *peerstore.Record) { r.Zone, r.Rack = z, rack } }
func joined(ago time.Duration) peerOpt {
	return func(r *peerstore.Record) { r.JoinedAt = now.Add(-ago) }
}

// add adds n peers named prefix-i holding chunks [from, to).
func (s *swarm) add(prefix string, n int, role trackerwire.Role, from, to uint32, opts ...peerOpt) []*peerstore.Record {
	var out []*peerstore.Record
	for i := range n {
		bf := trackerwire.NewBitfield(numChunks)
		for c := from; c < to; c++ {
			bf.Set(c)
		}
		r := &peerstore.Record{
			PeerID: fmt.Sprintf("%s-%d", prefix, i), Addrs: []string{"/ip4/10.0.0.1/tcp/4001"},
			Role: role, NumChunks: numChunks, Bitfield: bf, Have: to - from,
			Complete: to-from == numChunks, JoinedAt: now.Add(-time.Hour), LastSeen: now,
		}
		for _, o := range opts {
			o(r)
		}
		out = append(out, r)
	}
	s.recs = append(s.recs, out...)
	return out
}

func seeders(s *swarm, n int, opts ...peerOpt) []*peerstore.Record {
	return s.add("seed", n, trackerwire.RolePeer, 0, numChunks, opts...)
}

func origins(s *swarm, n int) []*peerstore.Record {
	return s.add("origin", n, trackerwire.RoleOrigin, 0, numChunks)
}

// requester holds chunks [from, to).
func requester(from, to uint32, opts ...peerOpt) Requester {
	r := (&swarm{}).add("req", 1, trackerwire.RolePeer, from, to, opts...)[0]
	r.PeerID = "requester"
	return ForRecord(r, now)
}

func count(out []*peerstore.Record, pred func(*peerstore.Record) bool) int {
	n := 0
	for _, r := range out {
		if pred(r) {
			n++
		}
	}
	return n
}

func isOrigin(r *peerstore.Record) bool { return r.IsOrigin() }

func hasPrefix(p string) func(*peerstore.Record) bool {
	return func(r *peerstore.Record) bool { return len(r.PeerID) > len(p) && r.PeerID[:len(p)+1] == p+"-" }
}

// checkInvariants asserts what holds for every handout.
func checkInvariants(t *testing.T, req Requester, out []*peerstore.Record, p Policy) {
	t.Helper()
	p = p.WithDefaults()
	if len(out) > p.Limit {
		t.Fatalf("%d peers, limit %d", len(out), p.Limit)
	}
	seen := map[string]bool{}
	origin := false
	for _, r := range out {
		if r.PeerID == req.PeerID {
			t.Fatal("requester handed itself")
		}
		if seen[r.PeerID] {
			t.Fatalf("%s handed out twice", r.PeerID)
		}
		seen[r.PeerID] = true
		if origin && !r.IsOrigin() {
			t.Fatalf("peer %s after an origin: origins must come last", r.PeerID)
		}
		origin = r.IsOrigin()
	}
	if n := count(out, isOrigin); n > p.MaxOrigins {
		t.Fatalf("%d origins, max %d", n, p.MaxOrigins)
	}
}

func TestScenarios(t *testing.T) {
	tests := []struct {
		name   string
		seed   uint64
		policy Policy
		build  func(s *swarm) Requester
		check  func(t *testing.T, out []*peerstore.Record)
	}{
		{
			name: "empty swarm",
			build: func(s *swarm) Requester {
				return requester(0, 0)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if len(out) != 0 {
					t.Fatalf("%d peers", len(out))
				}
			},
		},
		{
			name: "only origins: capped at MaxOrigins",
			build: func(s *swarm) Requester {
				origins(s, 5)
				return requester(0, 0)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if n := count(out, isOrigin); n != 2 || len(out) != 2 {
					t.Fatalf("%d origins of %d peers, want 2", n, len(out))
				}
			},
		},
		{
			name: "small swarm: everyone, origins capped",
			build: func(s *swarm) Requester {
				origins(s, 5)
				s.add("leech", 3, trackerwire.RolePeer, 0, 10)
				return requester(0, 0)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if n := count(out, hasPrefix("leech")); n != 3 || count(out, isOrigin) != 2 {
					t.Fatalf("%d leechers, %d origins", n, count(out, isOrigin))
				}
			},
		},
		{
			name: "plenty of seeders: seeders preferred, exactly one origin",
			build: func(s *swarm) Requester {
				origins(s, 3)
				seeders(s, 60)
				return requester(0, 100)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if len(out) != 50 || count(out, isOrigin) != 1 || count(out, hasPrefix("seed")) != 49 {
					t.Fatalf("%d peers, %d origins", len(out), count(out, isOrigin))
				}
			},
		},
		{
			name: "an origin is always included",
			build: func(s *swarm) Requester {
				seeders(s, 1000)
				origins(s, 1)
				return requester(0, 0)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if count(out, isOrigin) != 1 {
					t.Fatal("no origin")
				}
			},
		},
		{
			name:   "a small request is topped up with peers, not origins",
			policy: Policy{Limit: MinOriginLimit - 1},
			build: func(s *swarm) Requester {
				seeders(s, 10)
				origins(s, 2)
				return requester(0, 100)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if len(out) != MinOriginLimit-1 || count(out, isOrigin) != 0 {
					t.Fatalf("%d peers, %d origins", len(out), count(out, isOrigin))
				}
			},
		},
		{
			name:   "a small request gets an origin when peers cannot fill it",
			policy: Policy{Limit: 2},
			build: func(s *swarm) Requester {
				seeders(s, 1)
				s.add("useless", 10, trackerwire.RolePeer, 0, 10)
				origins(s, 2)
				return requester(0, 100)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if len(out) != 2 || count(out, isOrigin) != 1 || count(out, hasPrefix("seed")) != 1 {
					t.Fatalf("%d peers, %d origins", len(out), count(out, isOrigin))
				}
			},
		},
		{
			name: "requester itself is skipped",
			build: func(s *swarm) Requester {
				seeders(s, 10)
				self := s.add("req", 1, trackerwire.RolePeer, 0, 10)[0]
				self.PeerID = "requester"
				return requester(0, 10)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if len(out) != 10 {
					t.Fatalf("%d peers, want the 10 others", len(out))
				}
			},
		},
		{
			name:   "useful chunks preferred over useless",
			policy: Policy{Limit: 20, FreshFraction: -1, LocalFraction: -1},
			build: func(s *swarm) Requester {
				s.add("useless", 30, trackerwire.RolePeer, 0, 500)
				s.add("useful", 15, trackerwire.RolePeer, 500, 1000)
				s.add("some", 30, trackerwire.RolePeer, 400, 600)
				return requester(0, 500)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				// 15 with 500 useful chunks each, then 5 of the 30 with 100
				// (tier "mid"), none of the useless ones.
				if count(out, hasPrefix("useful")) != 15 || count(out, hasPrefix("some")) != 5 {
					t.Fatalf("useful %d, some %d", count(out, hasPrefix("useful")), count(out, hasPrefix("some")))
				}
				for i, r := range out[:15] {
					if !hasPrefix("useful")(r) {
						t.Fatalf("out[%d] = %s: best first", i, r.PeerID)
					}
				}
			},
		},
		{
			name: "late joiners get reserved slots",
			build: func(s *swarm) Requester {
				seeders(s, 200)
				origins(s, 2)
				s.add("new", 30, trackerwire.RolePeer, 0, 0, joined(time.Second))
				return requester(0, 300)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				// 49 peer slots, 20% = 10 fresh.
				if n := count(out, hasPrefix("new")); n != 10 {
					t.Fatalf("%d late joiners, want 10", n)
				}
				if count(out, hasPrefix("seed")) != 39 {
					t.Fatalf("%d seeders", count(out, hasPrefix("seed")))
				}
			},
		},
		{
			name: "a recently joined peer with many chunks is fresh too",
			build: func(s *swarm) Requester {
				seeders(s, 200)
				s.add("quick", 30, trackerwire.RolePeer, 0, 100, joined(5*time.Second))
				return requester(0, 300)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if n := count(out, hasPrefix("quick")); n != 10 {
					t.Fatalf("%d fresh, want 10", n)
				}
			},
		},
		{
			name: "same rack, then same zone, preferred for some slots",
			build: func(s *swarm) Requester {
				seeders(s, 300, zone("b", "rb"))
				s.add("rack", 5, trackerwire.RolePeer, 0, numChunks, zone("a", "r1"))
				s.add("zone", 20, trackerwire.RolePeer, 0, numChunks, zone("a", "r2"))
				origins(s, 1)
				return requester(0, 0, zone("a", "r1"))
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				// 49 slots, 25% = 12 local: all 5 of the rack, 7 of the zone
				// (plus whatever the random slots add).
				if n := count(out, hasPrefix("rack")); n != 5 {
					t.Fatalf("%d same-rack peers, want 5", n)
				}
				if n := count(out, hasPrefix("zone")); n < 7 {
					t.Fatalf("%d same-zone peers, want at least 7", n)
				}
			},
		},
		{
			name: "few useful peers: more origins",
			build: func(s *swarm) Requester {
				origins(s, 4)
				s.add("empty", 100, trackerwire.RolePeer, 0, 0)
				s.add("some", 5, trackerwire.RolePeer, 0, 10)
				return requester(0, 0)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if count(out, isOrigin) != 2 || count(out, hasPrefix("some")) != 5 {
					t.Fatalf("%d origins, %d useful", count(out, isOrigin), count(out, hasPrefix("some")))
				}
			},
		},
		{
			name: "complete requester: no origins, leechers first",
			build: func(s *swarm) Requester {
				origins(s, 3)
				seeders(s, 100)
				s.add("leech", 20, trackerwire.RolePeer, 0, 10)
				return requester(0, numChunks)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if count(out, isOrigin) != 0 || len(out) != 50 {
					t.Fatalf("%d origins of %d", count(out, isOrigin), len(out))
				}
				for i, r := range out[:20] {
					if !hasPrefix("leech")(r) {
						t.Fatalf("out[%d] = %s, want leechers first", i, r.PeerID)
					}
				}
			},
		},
		{
			name: "mismatched and unreachable candidates are skipped",
			build: func(s *swarm) Requester {
				odd := seeders(s, 3)
				odd[0].NumChunks = 7
				odd[1].Addrs = nil
				s.recs = append(s.recs, nil)
				return requester(0, 0)
			},
			check: func(t *testing.T, out []*peerstore.Record) {
				if len(out) != 1 || out[0].PeerID != "seed-2" {
					t.Fatalf("got %d peers", len(out))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &swarm{}
			req := tt.build(s)
			for seed := range uint64(5) {
				rng := rand.New(rand.NewPCG(tt.seed+seed, 42))
				out := Select(req, s.recs, tt.policy, rng)
				checkInvariants(t, req, out, tt.policy)
				tt.check(t, out)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	s := &swarm{}
	seeders(s, 300)
	origins(s, 3)
	s.add("leech", 100, trackerwire.RolePeer, 0, 400)
	req := requester(100, 200)
	ids := func(seed uint64) []string {
		var out []string
		for _, r := range Select(req, s.recs, Policy{}, rand.New(rand.NewPCG(seed, 0))) {
			out = append(out, r.PeerID)
		}
		return out
	}
	if a, b := ids(1), ids(1); !slices.Equal(a, b) {
		t.Fatal("same seed, different handouts")
	}
	if a, b := ids(1), ids(2); slices.Equal(a, b) {
		t.Fatal("different seeds, same handout: not random")
	}
}

// TestLoadSpread: 1,000 requesters each get 50 of 500 seeders; the
// in-degree of the most loaded seeder stays within a small factor of the
// mean, and every seeder is used.
func TestLoadSpread(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(s *swarm)
	}{
		{"seeders", func(s *swarm) { seeders(s, 500) }},
		{"mixed progress", func(s *swarm) {
			// Peers at 60..100% of the blob: all in the top tier for an
			// empty requester, so load still spreads over all of them.
			for i := range 10 {
				s.add(fmt.Sprintf("p%d", i), 50, trackerwire.RolePeer, 0, uint32(600+40*i))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &swarm{}
			tc.build(s)
			origins(s, 2)
			rng := rand.New(rand.NewPCG(7, 7))
			in := map[string]int{}
			const requesters = 1000
			for i := range requesters {
				req := requester(0, 0)
				req.PeerID = fmt.Sprintf("r%d", i)
				for _, r := range Select(req, s.recs, Policy{}, rng) {
					if !r.IsOrigin() {
						in[r.PeerID]++
					}
				}
			}
			total, most, least := 0, 0, requesters
			for _, d := range in {
				total += d
				most, least = max(most, d), min(least, d)
			}
			mean := float64(total) / 500
			t.Logf("in-degree: mean %.1f, min %d, max %d over %d peers", mean, least, most, len(in))
			if len(in) != 500 {
				t.Fatalf("only %d of 500 peers handed out", len(in))
			}
			if float64(most) > 1.5*mean || float64(least) < 0.5*mean {
				t.Fatalf("in-degree spread %d..%d around mean %.1f", least, most, mean)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	if err := (Policy{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	d := Policy{}.WithDefaults()
	if d.Limit != 50 || d.MaxOrigins != 2 {
		t.Fatalf("defaults: %+v", d)
	}
	for _, p := range []Policy{
		{Limit: -1},
		{Limit: MaxLimit + 1},
		{MaxOrigins: -1},
		{Limit: 3, MaxOrigins: 4},
		{FreshFraction: 1.5},
		{LocalFraction: 0.6, FreshFraction: 0.6},
		{FreshAge: -time.Second},
		{FreshHave: 2},
	} {
		if err := p.Validate(); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("Validate(%+v) = %v, want ErrBadPolicy", p, err)
		}
	}
}

func TestAndNotCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{0, 1, 7, 8, 9, 16, 125, 1000} {
		a, b := make([]byte, n), make([]byte, n)
		for i := range a {
			a[i], b[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		want := 0
		for i := range n * 8 {
			if a[i/8]&(1<<(i%8)) != 0 && b[i/8]&(1<<(i%8)) == 0 {
				want++
			}
		}
		if got := andNotCount(a, b); int(got) != want {
			t.Fatalf("n=%d: %d, want %d", n, got, want)
		}
	}
}

func BenchmarkSelect(b *testing.B) {
	s := &swarm{}
	seeders(s, 100)
	origins(s, 3)
	for i := range 30 {
		s.add(fmt.Sprintf("p%d", i), 10, trackerwire.RolePeer, uint32(i*25), uint32(i*25+200), zone("z", fmt.Sprint(i%4)))
	}
	req := requester(0, 500, zone("z", "1"))
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		Select(req, s.recs, Policy{}, rng)
	}
}

// TestTouchAndFilter covers Select's helpers: touch reads the first byte
// of each 64 and the last byte of a bitfield of any length, and filter
// returns nil, which take reads as "all", when no candidate passes.
func TestTouchAndFilter(t *testing.T) {
	b := make([]byte, 200)
	b[0], b[64], b[128], b[192], b[199] = 1, 2, 4, 8, 16
	for _, tc := range []struct {
		b    []byte
		want byte
	}{{nil, 0}, {b[:1], 1 ^ 1}, {b[:65], 1 ^ 2 ^ 2}, {b, 1 ^ 2 ^ 4 ^ 8 ^ 16}} {
		if got := touch(tc.b); got != tc.want {
			t.Errorf("touch(%d bytes) = %d, want %d", len(tc.b), got, tc.want)
		}
	}
	s := selector{others: []cand{{local: 1}, {local: 0}, {local: 2, taken: true}}}
	if got := s.filter(func(c *cand) bool { return c.local > 0 }); len(got) != 1 || got[0] != 0 {
		t.Errorf("filter = %v, want [0]", got)
	}
	if got := s.filter(func(c *cand) bool { return c.local > 5 }); got != nil {
		t.Errorf("filter of none = %#v, want nil", got)
	}
}
