package trackerbench

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// TestFleetAnnounces follows records through the announces the load
// generator sends: the raw JSON body is the one trackerclient would send
// (byte for byte), every request is valid, and the bodies
// follow the Announcer's rules (full bitfield until acknowledged, then
// deltas; a full one again after NeedFull or an error).
func TestFleetAnnounces(t *testing.T) {
	o := Options{Peers: 5, Blobs: 3, Chunks: 20, Origins: 1, Seed: 7}.WithDefaults()
	f := newFleet(o)
	if f.records() != 15 || len(f.order) != 15 {
		t.Fatalf("%d records, order of %d", f.records(), len(f.order))
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var a announce
	check := func(j int) *trackerwire.AnnounceRequest {
		t.Helper()
		f.recs[j].mu.Lock()
		defer f.recs[j].mu.Unlock()
		f.next(j, rng, &a)
		want := f.request(&a)
		if err := want.Validate(); err != nil {
			t.Fatalf("record %d: invalid request: %v", j, err)
		}
		got := f.appendJSON(nil, &a)
		if wb, _ := json.Marshal(want); string(got) != string(wb) {
			t.Fatalf("record %d: raw body\n%s\nwant\n%s", j, got, wb)
		}
		if _, err := trackerwire.ParseAnnounceRequest(got); err != nil {
			t.Fatalf("record %d: raw body: %v", j, err)
		}
		return want
	}
	for j := range f.records() {
		first := check(j)
		if first.Event != trackerwire.EventStarted {
			t.Errorf("record %d: first announce event %q", j, first.Event)
		}
		if origin := j/o.Blobs < o.Origins; origin != (first.Role == trackerwire.RoleOrigin) || origin != first.Complete {
			t.Errorf("record %d: role %s complete %v", j, first.Role, first.Complete)
		}
		if first.Role == trackerwire.RolePeer && first.Bitfield == nil {
			t.Errorf("record %d: first announce without a bitfield", j)
		}
		f.answered(&a, true, false, 0)
		have := f.recs[j].have
		next := check(j)
		if next.Role == trackerwire.RolePeer {
			if next.Bitfield != nil || next.Delta == nil && !next.Complete || next.Event == trackerwire.EventStarted {
				t.Errorf("record %d: second announce %+v", j, next)
			}
			if next.Delta != nil && uint32(len(next.Delta.Added)) != f.recs[j].have-have {
				t.Errorf("record %d: delta of %d, have %d -> %d", j, len(next.Delta.Added), have, f.recs[j].have)
			}
		}
		f.answered(&a, true, true, 0) // NeedFull
		if again := check(j); again.Role == trackerwire.RolePeer && again.Bitfield == nil && !again.Complete {
			t.Errorf("record %d: no full bitfield after NeedFull", j)
		}
		f.answered(&a, false, false, 0) // an error
		if again := check(j); again.Role == trackerwire.RolePeer && again.Bitfield == nil && !again.Complete {
			t.Errorf("record %d: no full bitfield after an error", j)
		}
	}
}

// TestFleetCompletes runs a record until it holds every chunk: it then
// announces complete, once with the completed event.
func TestFleetCompletes(t *testing.T) {
	f := newFleet(Options{Peers: 1, Blobs: 1, Chunks: 9, Origins: -1}.WithDefaults())
	rng := rand.New(rand.NewPCG(3, 3))
	var a announce
	completed := 0
	for range 100 {
		f.next(0, rng, &a)
		if err := f.request(&a).Validate(); err != nil {
			t.Fatal(err)
		}
		if a.event == trackerwire.EventCompleted {
			completed++
		}
		f.answered(&a, true, false, 0)
	}
	if r := &f.recs[0]; r.have != 9 || r.bf.Count() != 9 || !a.complete || completed != 1 {
		t.Fatalf("have %d (bitfield %d), complete %v, completed events %d", r.have, r.bf.Count(), a.complete, completed)
	}
	if !reflect.DeepEqual(f.request(&a).Bitfield, trackerwire.Bitfield(nil)) {
		t.Error("a complete announce carries a bitfield")
	}
}

// TestScan checks the raw client's reading of answers against the real
// encoding.
func TestScan(t *testing.T) {
	peer := trackerwire.PeerInfo{PeerID: "12D3KooW0", Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}, Role: trackerwire.RolePeer, Zone: "zone-1"}
	for _, resp := range []trackerwire.AnnounceResponse{
		{Interval: 5, Peers: []trackerwire.PeerInfo{}},
		{Interval: 5, Peers: []trackerwire.PeerInfo{}, NeedFull: true},
		{Interval: 5, Peers: []trackerwire.PeerInfo{peer}},
		{Interval: 5, Peers: slices.Repeat([]trackerwire.PeerInfo{peer}, 50)},
	} {
		if got := scan(resp.AppendJSON(nil)); got.needFull != resp.NeedFull || got.peers != len(resp.Peers) {
			t.Errorf("scan = %+v for %d peers, need_full %v", got, len(resp.Peers), resp.NeedFull)
		}
	}
}

// TestFleetNumWant checks that the simulated peers ask for peers as
// peer.Engine does: their free connection slots, shared by their blobs,
// none for a complete blob, and no num_want at all with MaxConns < 0.
func TestFleetNumWant(t *testing.T) {
	o := Options{Peers: 3, Blobs: 2, Chunks: 20, Origins: 1, MaxConns: 10, Seed: 7}.WithDefaults()
	f := newFleet(o)
	rng := rand.New(rand.NewPCG(1, 1))
	var a announce
	f.next(0, rng, &a) // the origin
	if a.numWant != 0 || f.request(&a).NumWant == nil {
		t.Fatalf("origin asks for %d", a.numWant)
	}
	f.next(2, rng, &a) // peer 1, blob 0
	if a.numWant != 10 {
		t.Fatalf("a new peer asks for %d, want 10", a.numWant)
	}
	f.answered(&a, true, false, 4)
	f.next(3, rng, &a) // peer 1, blob 1: the same engine's connections
	if a.numWant != 6 && a.numWant != 7 {
		t.Fatalf("with 4 connections, asks for %d", a.numWant)
	}
	f.answered(&a, true, false, 9) // capped at 10 connections
	asked := 0
	for range 100 {
		f.next(2, rng, &a)
		if a.numWant > 1 {
			t.Fatalf("a peer with its connections asks for %d", a.numWant)
		}
		asked += a.numWant
		f.answered(&a, true, false, a.numWant)
	}
	if asked == 0 || asked > 40 {
		t.Fatalf("asked for %d peers in 100 announces, want about %v", asked, 100*connLoss)
	}
	o.MaxConns = -1
	f = newFleet(o)
	f.next(2, rng, &a)
	if a.numWant >= 0 || f.request(&a).NumWant != nil || strings.Contains(string(f.appendJSON(nil, &a)), "num_want") {
		t.Fatalf("MaxConns -1: num_want %d", a.numWant)
	}
}
