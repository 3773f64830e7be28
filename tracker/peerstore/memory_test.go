package peerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const ttl = 15 * time.Second

var (
	blobA = chunker.Sum([]byte("a"))
	blobB = chunker.Sum([]byte("b"))
)

func newStore(t testing.TB) (*Memory, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Time{})
	return NewMemory(clk, ttl), clk
}

// full returns a full-bitfield announce of peer id holding chunks.
func full(blob chunker.Digest, id string, n uint32, chunks ...uint32) *trackerwire.AnnounceRequest {
	bf := trackerwire.NewBitfield(n)
	for _, c := range chunks {
		bf.Set(c)
	}
	return &trackerwire.AnnounceRequest{
		Blob: blob, PeerID: id, Addrs: []string{"/ip4/127.0.0.1/tcp/4001"},
		Role: trackerwire.RolePeer, NumChunks: n, Bitfield: bf,
	}
}

func delta(blob chunker.Digest, id string, n uint32, added ...uint32) *trackerwire.AnnounceRequest {
	r := full(blob, id, n)
	r.Bitfield, r.Delta = nil, &trackerwire.Delta{Added: added}
	return r
}

func origin(blob chunker.Digest, id string, n uint32) *trackerwire.AnnounceRequest {
	r := full(blob, id, n)
	r.Bitfield, r.Role, r.Complete = nil, trackerwire.RoleOrigin, true
	return r
}

func mustAnnounce(t testing.TB, s Store, req *trackerwire.AnnounceRequest) Result {
	t.Helper()
	res, err := s.Announce(context.Background(), req)
	if err != nil {
		t.Fatalf("Announce(%s): %v", req.PeerID, err)
	}
	return res
}

func TestAnnounceBitfields(t *testing.T) {
	s, clk := newStore(t)
	ctx := context.Background()

	// A delta with no stored state asks for the full bitfield and stores nothing.
	if res := mustAnnounce(t, s, delta(blobA, "p1", 20, 1)); !res.NeedFull || res.Record != nil {
		t.Fatalf("delta without state: %+v", res)
	}
	if _, err := s.Swarm(ctx, blobA); !errors.Is(err, ErrNotFound) {
		t.Fatalf("NeedFull left a swarm behind: %v", err)
	}

	res := mustAnnounce(t, s, full(blobA, "p1", 20, 0, 5))
	if !res.Created || res.Record.Have != 2 || !res.Record.Bitfield.Has(5) {
		t.Fatalf("full announce: %+v", res)
	}
	first := res.Record
	joined := first.JoinedAt

	clk.Advance(time.Second)
	res = mustAnnounce(t, s, delta(blobA, "p1", 20, 5, 7, 19, 7))
	if res.Created || res.NeedFull || res.Record.Have != 4 {
		t.Fatalf("delta: %+v", res)
	}
	for _, c := range []uint32{0, 5, 7, 19} {
		if !res.Record.Bitfield.Has(c) {
			t.Errorf("chunk %d missing after delta", c)
		}
	}
	if !res.Record.JoinedAt.Equal(joined) || !res.Record.LastSeen.Equal(clk.Now()) {
		t.Errorf("times: joined %v last %v", res.Record.JoinedAt, res.Record.LastSeen)
	}
	// Records are immutable snapshots.
	if first.Have != 2 || first.Bitfield.Has(7) {
		t.Fatal("a later announce changed an earlier record")
	}
	// An empty delta is a heartbeat; it keeps the stored bitfield (a
	// small one is copied beside the new record: see TestRecordLayout).
	again := mustAnnounce(t, s, delta(blobA, "p1", 20)).Record
	if again.Have != 4 || !bytes.Equal(again.Bitfield, res.Record.Bitfield) {
		t.Fatalf("heartbeat: have %d, bitfield %x, want %x", again.Have, again.Bitfield, res.Record.Bitfield)
	}
	// A full bitfield may drop chunks.
	if got := mustAnnounce(t, s, full(blobA, "p1", 20, 3)).Record; got.Have != 1 || got.Bitfield.Has(0) {
		t.Fatalf("full after delta: %+v", got)
	}
	// Complete implies every chunk, with or without a bitfield, and complete
	// records share one bitfield.
	c1 := mustAnnounce(t, s, origin(blobA, "o1", 20)).Record
	req := delta(blobA, "p1", 20)
	req.Complete = true
	c2 := mustAnnounce(t, s, req).Record
	if c1.Have != 20 || c2.Have != 20 || !c2.Complete || &c1.Bitfield[0] != &c2.Bitfield[0] {
		t.Fatalf("complete: %d %d", c1.Have, c2.Have)
	}
	// The caller's slices are not retained.
	req = full(blobA, "p2", 20, 1)
	got := mustAnnounce(t, s, req).Record
	req.Bitfield.Set(2)
	req.Addrs[0] = "/changed"
	if got.Bitfield.Has(2) || got.Addrs[0] == "/changed" {
		t.Fatal("store shares the request's slices")
	}
}

func TestAnnounceInvalid(t *testing.T) {
	s, _ := newStore(t)
	req := full(blobA, "p1", 20)
	req.Bitfield = req.Bitfield[:1]
	if _, err := s.Announce(context.Background(), req); !errors.Is(err, trackerwire.ErrInvalid) {
		t.Fatalf("Announce = %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Announce(ctx, full(blobA, "p1", 20)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Announce with a cancelled context = %v", err)
	}
}

func TestConflict(t *testing.T) {
	s, clk := newStore(t)
	mustAnnounce(t, s, full(blobA, "p1", 20))
	_, err := s.Announce(context.Background(), full(blobA, "p2", 21))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Announce with another NumChunks = %v, want ErrConflict", err)
	}
	// Once the live peers have expired, the new size wins.
	clk.Advance(ttl)
	if res := mustAnnounce(t, s, full(blobA, "p2", 21)); res.Record.NumChunks != 21 {
		t.Fatalf("after expiry: %+v", res)
	}
}

// TestSwarmManifest: the snapshot carries the manifest ID the live
// origins agree on, and none when they disagree or have expired.
func TestSwarmManifest(t *testing.T) {
	s, clk := newStore(t)
	ctx := context.Background()
	m1, m2 := chunker.Sum([]byte("m1")), chunker.Sum([]byte("m2"))
	manifest := func() chunker.Digest {
		t.Helper()
		snap, err := s.Swarm(ctx, blobA)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Manifest
	}
	mustAnnounce(t, s, full(blobA, "p1", 20, 1, 2))
	if got := manifest(); !got.IsZero() {
		t.Fatalf("manifest with no origin = %s, want none", got)
	}
	o1 := origin(blobA, "o1", 20)
	o1.Manifest = m1
	mustAnnounce(t, s, o1)
	mustAnnounce(t, s, origin(blobA, "o0", 20)) // an origin that sends none
	if got := manifest(); got != m1 {
		t.Fatalf("manifest = %s, want %s", got, m1)
	}
	o2 := origin(blobA, "o2", 20)
	o2.Manifest = m2
	mustAnnounce(t, s, o2)
	if got := manifest(); !got.IsZero() {
		t.Fatalf("manifest with disagreeing origins = %s, want none", got)
	}
	// o1 and o0 expire; o2 alone decides.
	clk.Advance(ttl / 2)
	mustAnnounce(t, s, o2)
	mustAnnounce(t, s, full(blobA, "p1", 20, 1, 2))
	clk.Advance(ttl/2 + time.Second)
	if got := manifest(); got != m2 {
		t.Fatalf("manifest after o1 expired = %s, want %s", got, m2)
	}
	// A peer may not vouch for a manifest.
	p := full(blobA, "p3", 20)
	p.Manifest = m1
	if _, err := s.Announce(ctx, p); !errors.Is(err, trackerwire.ErrInvalid) {
		t.Fatalf("peer announcing a manifest = %v, want ErrInvalid", err)
	}
}

func TestStopped(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustAnnounce(t, s, full(blobA, "p1", 20))
	mustAnnounce(t, s, full(blobA, "p2", 20))
	stop := &trackerwire.AnnounceRequest{Blob: blobA, PeerID: "p1", Role: trackerwire.RolePeer, NumChunks: 20, Event: trackerwire.EventStopped}
	if res := mustAnnounce(t, s, stop); !res.Removed {
		t.Fatalf("stop: %+v", res)
	}
	if res := mustAnnounce(t, s, stop); res.Removed {
		t.Fatalf("second stop removed something: %+v", res)
	}
	if _, err := s.Get(ctx, blobA, "p1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after stop = %v", err)
	}
	if _, err := s.Get(ctx, blobA, "p2"); err != nil {
		t.Fatalf("Get(p2) = %v", err)
	}
	stop.PeerID = "p2"
	mustAnnounce(t, s, stop)
	if st, _ := s.Stats(ctx); st != (Stats{}) {
		t.Fatalf("Stats after all stopped = %+v", st)
	}
}

func TestExpiry(t *testing.T) {
	s, clk := newStore(t)
	ctx := context.Background()
	mustAnnounce(t, s, full(blobA, "old", 20))
	mustAnnounce(t, s, origin(blobA, "origin", 20))
	mustAnnounce(t, s, full(blobB, "other", 8))
	clk.Advance(ttl / 2)
	mustAnnounce(t, s, full(blobA, "new", 20))
	mustAnnounce(t, s, origin(blobA, "origin", 20))

	// Lazy expiry: reads skip expired records before any sweep.
	clk.Advance(ttl / 2)
	if _, err := s.Get(ctx, blobA, "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(expired) = %v", err)
	}
	snap, err := s.Swarm(ctx, blobA)
	if err != nil || len(snap.Records) != 2 || snap.Records[0].PeerID != "new" || snap.Records[1].PeerID != "origin" {
		t.Fatalf("Swarm = %+v, %v", snap, err)
	}
	cands, _ := s.Candidates(ctx, blobA, CandidateQuery{})
	if len(cands) != 2 {
		t.Fatalf("Candidates returned %d records, want 2", len(cands))
	}
	if _, err := s.Swarm(ctx, blobB); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Swarm(all expired) = %v", err)
	}
	list, _ := s.Swarms(ctx)
	if len(list) != 1 || list[0].Blob != blobA || list[0].Peers != 2 || list[0].Origins != 1 {
		t.Fatalf("Swarms = %+v", list)
	}
	// Stats counts unswept records; the sweep frees them.
	if st, _ := s.Stats(ctx); st.Peers != 4 || st.Swarms != 2 {
		t.Fatalf("Stats before sweep = %+v", st)
	}
	if n, err := s.Expire(ctx); n != 2 || err != nil {
		t.Fatalf("Expire = %d, %v; want 2", n, err)
	}
	if st, _ := s.Stats(ctx); st.Peers != 2 || st.Swarms != 1 {
		t.Fatalf("Stats after sweep = %+v", st)
	}
	// An expired peer that announces a delta must send its bitfield again.
	clk.Advance(ttl)
	if res := mustAnnounce(t, s, delta(blobA, "new", 20, 1)); !res.NeedFull {
		t.Fatalf("delta after expiry: %+v", res)
	}
	clk.Advance(tombstoneTTLs * ttl)
	if n, _ := s.Expire(ctx); n != 1 { // "new" was removed by its own announce
		t.Fatalf("second Expire removed %d", n)
	}
	// Tombstones outlive records for a while, then go too.
	clk.Advance(tombstoneTTLs * ttl)
	if _, err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(ctx); st != (Stats{}) {
		t.Fatalf("Stats at the end = %+v", st)
	}
	for i := range s.shards {
		if n := len(s.shards[i].swarms); n != 0 {
			t.Fatalf("shard %d keeps %d swarms", i, n)
		}
	}
}

func TestUploadTotals(t *testing.T) {
	s, clk := newStore(t)
	ctx := context.Background()
	announce := func(req *trackerwire.AnnounceRequest, up uint64) {
		t.Helper()
		req.Uploaded = up
		mustAnnounce(t, s, req)
	}
	totals := func() (uint64, uint64) {
		t.Helper()
		snap, err := s.Swarm(ctx, blobA)
		if err != nil {
			t.Fatal(err)
		}
		return snap.UploadedByOrigins, snap.UploadedByPeers
	}
	check := func(wantO, wantP uint64) {
		t.Helper()
		if o, p := totals(); o != wantO || p != wantP {
			t.Fatalf("totals = %d from origins, %d from peers; want %d, %d", o, p, wantO, wantP)
		}
	}
	announce(origin(blobA, "o1", 20), 1000)
	announce(full(blobA, "p1", 20), 10)
	announce(full(blobA, "p2", 20), 20)
	check(1000, 30)
	announce(origin(blobA, "o1", 20), 1500)
	check(1500, 30)
	// p1 restarts its counters: what it had reported stays counted.
	announce(full(blobA, "p1", 20), 5)
	check(1500, 35)
	// p2 stops: its bytes stay counted.
	mustAnnounce(t, s, &trackerwire.AnnounceRequest{Blob: blobA, PeerID: "p2", Role: trackerwire.RolePeer, NumChunks: 20, Event: trackerwire.EventStopped})
	check(1500, 35)
	// p1 stalls past the TTL and comes back with its counters running on:
	// counted once.
	clk.Advance(ttl)
	announce(origin(blobA, "o1", 20), 1500)
	if _, err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	check(1500, 35)
	announce(full(blobA, "p1", 20), 7)
	check(1500, 37)
}

func TestCandidates(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const n = 200
	for i := range n {
		mustAnnounce(t, s, full(blobA, fmt.Sprintf("p%03d", i), 20, uint32(i%20)))
	}
	for i := range 3 {
		mustAnnounce(t, s, origin(blobA, fmt.Sprintf("o%d", i), 20))
	}
	if _, err := s.Candidates(ctx, blobB, CandidateQuery{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Candidates(unknown) = %v", err)
	}
	all, _ := s.Candidates(ctx, blobA, CandidateQuery{Exclude: "p007"})
	if len(all) != n+3-1 {
		t.Fatalf("unbounded: %d records", len(all))
	}
	for _, r := range all {
		if r.PeerID == "p007" {
			t.Fatal("excluded peer returned")
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	hits := map[string]int{}
	const rounds = 2000
	for _, k := range []int{10, 150} { // both sampling paths
		clear(hits)
		for range rounds {
			got, err := s.Candidates(ctx, blobA, CandidateQuery{MaxPeers: k, MaxOrigins: 2, Rand: rng})
			if err != nil {
				t.Fatal(err)
			}
			origins := 0
			seen := map[string]bool{}
			for _, r := range got {
				if seen[r.PeerID] {
					t.Fatalf("k=%d: %s returned twice", k, r.PeerID)
				}
				seen[r.PeerID] = true
				if r.IsOrigin() {
					origins++
				}
				hits[r.PeerID]++
			}
			if origins != 2 || len(got) != k+2 {
				t.Fatalf("k=%d: %d records, %d origins", k, len(got), origins)
			}
		}
		// Uniform: each peer is drawn k/n of the time.
		mean := float64(rounds*k) / n
		for i := range n {
			id := fmt.Sprintf("p%03d", i)
			if h := float64(hits[id]); h < mean*0.6 || h > mean*1.4 {
				t.Fatalf("k=%d: %s drawn %v times, mean %v", k, id, h, mean)
			}
		}
	}
}

func TestConcurrent(t *testing.T) {
	s, clk := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			blob := blobA
			if w%2 == 1 {
				blob = blobB
			}
			for i := range 300 {
				id := fmt.Sprintf("w%d-p%d", w, (i/5)%20)
				var err error
				switch i % 5 {
				case 0:
					_, err = s.Announce(ctx, full(blob, id, 64, uint32(i%64)))
				case 1:
					_, err = s.Announce(ctx, delta(blob, id, 64, uint32(i%64)))
				case 2:
					_, err = s.Candidates(ctx, blob, CandidateQuery{MaxPeers: 5, MaxOrigins: 1, Rand: rng})
				case 3:
					_, err = s.Swarm(ctx, blob)
					_, _ = s.Swarms(ctx)
				case 4:
					_, err = s.Expire(ctx)
					_, _ = s.Stats(ctx)
					clk.Advance(time.Millisecond)
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, _ := s.Stats(ctx)
	if st.Swarms != 2 || st.Peers != 8*20 {
		t.Fatalf("Stats = %+v", st)
	}
}

// TestMemoryPerRecord checks the design budget: 10,000 peers × 10 blobs of
// 1,000 chunks must fit in well under 100 MB.
func TestMemoryPerRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s, _ := newStore(t)
	const peers, chunks = 10000, 1000
	reqs := make([]*trackerwire.AnnounceRequest, peers)
	for i := range reqs {
		reqs[i] = full(blobA, fmt.Sprintf("12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGT%09d", i), chunks, uint32(i%chunks))
		reqs[i].Addrs = []string{fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255)}
		reqs[i].Zone, reqs[i].Rack = "eu-west-1a", fmt.Sprintf("rack-%d", i%40)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, r := range reqs {
		mustAnnounce(t, s, r)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(reqs)
	perRecord := float64(after.HeapAlloc-before.HeapAlloc) / peers
	t.Logf("%.0f bytes per record of %d chunks", perRecord, chunks)
	if perRecord > 1024 {
		t.Fatalf("%.0f bytes per record, budget 1024", perRecord)
	}
	runtime.KeepAlive(s)
}

// TestRecordLayout checks where records keep their bitfields: up to
// maxInlineBitfield bytes in the record's own allocation, after it at the
// next multiple of 64 bytes (a fresh copy with every announce); beyond,
// in an allocation of their own that announces which change nothing
// share.
func TestRecordLayout(t *testing.T) {
	after := func(r *Record) bool {
		return uintptr(unsafe.Pointer(&r.Bitfield[0])) == uintptr(unsafe.Pointer(r))+unsafe.Sizeof(*r)+linePad
	}
	for _, n := range []uint32{1, 8 * 32, 8*32 + 1, 1000, 8 * maxInlineBitfield, 8*maxInlineBitfield + 1, 20000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, _ := newStore(t)
			first := mustAnnounce(t, s, full(blobA, "p1", n, 0, n-1)).Record
			if (unsafe.Sizeof(*first)+linePad)%64 != 0 {
				t.Fatalf("record of %d bytes padded by %d", unsafe.Sizeof(*first), linePad)
			}
			heartbeat := mustAnnounce(t, s, delta(blobA, "p1", n)).Record
			changed := mustAnnounce(t, s, delta(blobA, "p1", n, n/2)).Record
			for _, r := range []*Record{first, heartbeat, changed} {
				if len(r.Bitfield) != trackerwire.BitfieldLen(n) || cap(r.Bitfield) != len(r.Bitfield) {
					t.Fatalf("bitfield len %d cap %d, want %d", len(r.Bitfield), cap(r.Bitfield), trackerwire.BitfieldLen(n))
				}
				if inline := trackerwire.BitfieldLen(n) <= maxInlineBitfield; after(r) != inline {
					t.Errorf("bitfield right after the record: %v, want %v", after(r), inline)
				}
			}
			if shared := &heartbeat.Bitfield[0] == &first.Bitfield[0]; shared == (trackerwire.BitfieldLen(n) <= maxInlineBitfield) {
				t.Errorf("heartbeat shares the bitfield: %v", shared)
			}
			if first.Have != 2 && n > 1 || heartbeat.Have != first.Have || changed.Have != first.Have+1 && n > 2 || !changed.Bitfield.Has(n/2) {
				t.Errorf("have %d %d %d", first.Have, heartbeat.Have, changed.Have)
			}
		})
	}
}

// TestSlotsMatchRecords checks the invariants of the swarms' lists after
// a random mix of joins, updates, role changes, stops and sweeps: every
// slot's seen time is its record's LastSeen, and the index points at it.
func TestSlotsMatchRecords(t *testing.T) {
	s, clk := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range 3000 {
		id := fmt.Sprintf("p%d", rng.IntN(60))
		var req *trackerwire.AnnounceRequest
		switch rng.IntN(6) {
		case 0:
			req = origin(blobA, id, 16)
		case 1:
			req = delta(blobA, id, 16, uint32(rng.IntN(16)))
		case 2:
			req = full(blobA, id, 16)
			req.Event = trackerwire.EventStopped
		default:
			req = full(blobA, id, 16, uint32(rng.IntN(16)))
		}
		if _, err := s.Announce(ctx, req); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Duration(rng.IntN(int(ttl / 20))))
		if i%100 == 0 {
			if _, err := s.Expire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sh := s.shard(blobA)
		sw := sh.swarms[blobA]
		if sw == nil {
			continue
		}
		if len(sw.index) != sw.len() {
			t.Fatalf("step %d: index has %d entries for %d records", i, len(sw.index), sw.len())
		}
		for _, list := range []struct {
			m      members
			origin bool
		}{{sw.peers, false}, {sw.origins, true}} {
			for j, sl := range list.m {
				r := sl.rec
				if sl.seen != s.since(r.LastSeen) || r.IsOrigin() != list.origin || sw.get(r.PeerID) != r {
					t.Fatalf("step %d: slot %d of %v: seen %d, record seen %d, origin %v, indexed %p for %p",
						i, j, list.origin, sl.seen, s.since(r.LastSeen), r.IsOrigin(), sw.get(r.PeerID), r)
				}
			}
		}
	}
}
