package trackerbench

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
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
		f.answered(&a, true, false)
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
		f.answered(&a, true, true) // NeedFull
		if again := check(j); again.Role == trackerwire.RolePeer && again.Bitfield == nil && !again.Complete {
			t.Errorf("record %d: no full bitfield after NeedFull", j)
		}
		f.answered(&a, false, false) // an error
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
		f.answered(&a, true, false)
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
