package trackerwire

import (
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/p2pd/p2pd/chunker"
)

// requestShapes are valid requests in every shape trackerclient sends:
// full bitfield, delta (empty too), complete, origin, stopped, optional
// fields on and off.
func requestShapes() []*AnnounceRequest {
	full := validRequest()
	delta := validRequest()
	delta.Bitfield, delta.Delta, delta.Event = nil, &Delta{Added: []uint32{3, 0, 19}}, EventNone
	delta.Uploaded, delta.Downloaded, delta.DownloadedFromOrigins = 1<<40, 1<<41, 12345
	empty := validRequest()
	empty.Bitfield, empty.Delta, empty.Zone, empty.Rack = nil, &Delta{Added: []uint32{}}, "", ""
	complete := validRequest()
	complete.Bitfield, complete.Complete, complete.Event = nil, true, EventCompleted
	origin := validRequest()
	origin.Bitfield, origin.Complete, origin.Role, origin.Manifest = nil, true, RoleOrigin, chunker.Sum([]byte("m"))
	stopped := &AnnounceRequest{Blob: testBlob, PeerID: "p", Role: RolePeer, NumChunks: 20, Event: EventStopped, Uploaded: 7}
	wantNone := validRequest()
	wantNone.Bitfield, wantNone.Delta, wantNone.NumWant = nil, &Delta{Added: []uint32{1}}, WantPeers(0)
	wantSome := validRequest()
	wantSome.NumWant = WantPeers(MaxNumWant)
	return []*AnnounceRequest{full, delta, empty, complete, origin, stopped, wantNone, wantSome}
}

// TestParseCanonical checks that the fast path takes what json.Marshal
// makes of requests of every shape, and decodes it as encoding/json does.
func TestParseCanonical(t *testing.T) {
	for _, req := range requestShapes() {
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseCanonical(b)
		if !ok {
			t.Errorf("fast path refused %s", b)
			continue
		}
		var want AnnounceRequest
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("fast path decoded %s\nas %+v\nwant %+v", b, got, &want)
		}
	}
}

// TestParseCanonicalRefuses lists JSON the fast path leaves to
// encoding/json.
func TestParseCanonicalRefuses(t *testing.T) {
	b, _ := json.Marshal(requestShapes()[1])
	s := string(b)
	for name, in := range map[string]string{
		"space":          strings.Replace(s, `"peer_id":`, `"peer_id": `, 1),
		"key case":       strings.Replace(s, `"peer_id"`, `"Peer_ID"`, 1),
		"escape":         strings.Replace(s, `"r17"`, `"r\u0031"`, 1),
		"non-ASCII":      strings.Replace(s, `"r17"`, `"r1é"`, 1),
		"unknown field":  strings.Replace(s, `"role"`, `"x":1,"role"`, 1),
		"order":          `{"peer_id":"p","blob":"` + testBlob.String() + `","role":"peer","num_chunks":1,"uploaded":0,"downloaded":0}`,
		"leading zero":   strings.Replace(s, `"num_chunks":20`, `"num_chunks":020`, 1),
		"fraction":       strings.Replace(s, `"num_chunks":20`, `"num_chunks":20.0`, 1),
		"exponent":       strings.Replace(s, `"num_chunks":20`, `"num_chunks":2e1`, 1),
		"negative":       strings.Replace(s, `"num_chunks":20`, `"num_chunks":-20`, 1),
		"overflow":       strings.Replace(s, `"num_chunks":20`, `"num_chunks":4294967296`, 1),
		"null":           strings.Replace(s, `"zone":"eu-west-1a"`, `"zone":null`, 1),
		"complete false": strings.Replace(s, `"uploaded"`, `"complete":false,"uploaded"`, 1),
		"trailing":       s + " ",
		"bad digest":     strings.Replace(s, "sha256:", "sha512:", 1),
		"bad base64":     `{"blob":"` + testBlob.String() + `","peer_id":"p","role":"peer","num_chunks":8,"bitfield":"!!","uploaded":0,"downloaded":0}`,
	} {
		if _, ok := parseCanonical([]byte(in)); ok {
			t.Errorf("%s: fast path took %s", name, in)
		}
	}
}

// FuzzParseCanonical checks that whatever the fast path takes, encoding/json
// takes too and decodes to the same request.
func FuzzParseCanonical(f *testing.F) {
	for _, req := range requestShapes() {
		b, _ := json.Marshal(req)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseCanonical(b)
		if !ok {
			return
		}
		var want AnnounceRequest
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path took %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("fast path decoded %q\nas %+v\nwant %+v", b, got, &want)
		}
	})
}

func BenchmarkParseAnnounceRequest(b *testing.B) {
	body, _ := json.Marshal(requestShapes()[1])
	b.Run("canonical", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseAnnounceRequest(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req AnnounceRequest
			if err := json.Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestReadAtMost checks the body reader of DecodeAnnounceRequest: all of a
// short body, the limit of a long one, from an empty buffer too.
func TestReadAtMost(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{{"", 10, ""}, {"abc", 10, "abc"}, {long, 4097, long[:4097]}, {long, 9999, long}} {
		got, err := readAtMost(nil, iotest.OneByteReader(strings.NewReader(tc.in)), tc.n)
		if err != nil || string(got) != tc.want {
			t.Errorf("readAtMost(%d bytes, %d) = %d bytes, %v", len(tc.in), tc.n, len(got), err)
		}
	}
	if _, err := readAtMost(nil, iotest.ErrReader(io.ErrUnexpectedEOF), 10); err != io.ErrUnexpectedEOF {
		t.Errorf("error %v", err)
	}
}
