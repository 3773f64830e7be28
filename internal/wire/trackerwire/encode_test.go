package trackerwire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestAppendJSONMatchesMarshal checks AppendJSON byte for byte against
// encoding/json, strings that need escaping included.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	peer := PeerInfo{
		PeerID: "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf", Addrs: []string{"/ip4/10.0.0.1/tcp/4001", "/dns/a.example/tcp/1"},
		Role: RolePeer, Have: 17, Zone: "eu-west-1a", Rack: "r17",
	}
	escaped := peer
	escaped.Addrs = []string{`/dns/"<&>"\/tcp/1`, "/ip6/\u2028/\x01\xff"}
	escaped.Zone, escaped.Rack = "zone\t\n", "é"
	origin := PeerInfo{PeerID: "o", Role: RoleOrigin, Complete: true, Have: 1 << 31}
	for _, tc := range []struct {
		name string
		resp AnnounceResponse
	}{
		{"empty", AnnounceResponse{Interval: 5, Peers: []PeerInfo{}}},
		{"nil peers", AnnounceResponse{}},
		{"need full", AnnounceResponse{Interval: 1, NeedFull: true, Peers: []PeerInfo{}}},
		{"peers", AnnounceResponse{Interval: 3600, Peers: []PeerInfo{peer, origin, {Role: "x"}}}},
		{"escapes", AnnounceResponse{Interval: -1, Peers: []PeerInfo{escaped}}},
		{"nil addrs", AnnounceResponse{Peers: []PeerInfo{{PeerID: "p", Addrs: nil}, {PeerID: "q", Addrs: []string{}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(&tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.resp.AppendJSON([]byte("prefix")); !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Errorf("AppendJSON:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// FuzzAppendJSON checks AppendJSON against encoding/json on arbitrary
// strings.
func FuzzAppendJSON(f *testing.F) {
	f.Add("12D3KooW", "/ip4/1.2.3.4/tcp/1", "z", "r", uint32(3), true)
	f.Add("\x00\"\\<>&\u2028", "\xff", "", "é", uint32(0), false)
	f.Fuzz(func(t *testing.T, id, addr, zone, rack string, have uint32, complete bool) {
		resp := AnnounceResponse{Interval: int64(have), NeedFull: complete, Peers: []PeerInfo{
			{PeerID: id, Addrs: []string{addr, id}, Role: Role(rack), Complete: complete, Have: have, Zone: zone, Rack: rack},
		}}
		want, err := json.Marshal(&resp)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON:\n%q\nwant\n%q", got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	resp := AnnounceResponse{Interval: 5, Peers: make([]PeerInfo, 50)}
	for i := range resp.Peers {
		resp.Peers[i] = PeerInfo{
			PeerID: "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf", Addrs: []string{"/ip4/10.0.0.1/tcp/4001"},
			Role: RolePeer, Have: 500, Zone: "zone-1", Rack: "zone-1-rack-7",
		}
	}
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = resp.AppendJSON(buf[:0])
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&resp)
		}
	})
}
