package trackerwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testBlob = chunker.Sum([]byte("blob"))

// validRequest returns a valid announce for a 20-chunk blob holding chunks
// 0 and 19.
func validRequest() *AnnounceRequest {
	bf := NewBitfield(20)
	bf.Set(0)
	bf.Set(19)
	return &AnnounceRequest{
		Blob:      testBlob,
		PeerID:    "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf",
		Addrs:     []string{"/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"},
		Role:      RolePeer,
		NumChunks: 20,
		Bitfield:  bf,
		Zone:      "eu-west-1a",
		Rack:      "r17",
		Event:     EventStarted,
	}
}

func TestBitfield(t *testing.T) {
	for _, n := range []uint32{1, 7, 8, 9, 20, 1000, MaxNumChunks} {
		b := NewBitfield(n)
		if len(b) != BitfieldLen(n) || b.Count() != 0 {
			t.Fatalf("NewBitfield(%d): len %d count %d", n, len(b), b.Count())
		}
		if err := b.Check(n); err != nil {
			t.Fatalf("empty bitfield for %d: %v", n, err)
		}
		f := FullBitfield(n)
		if f.Count() != int(n) {
			t.Fatalf("FullBitfield(%d).Count() = %d", n, f.Count())
		}
		if err := f.Check(n); err != nil {
			t.Fatalf("full bitfield for %d: %v", n, err)
		}
		if !f.Has(n-1) || f.Has(n) {
			t.Fatalf("FullBitfield(%d): Has(n-1)=%v Has(n)=%v", n, f.Has(n-1), f.Has(n))
		}
	}
	b := NewBitfield(20)
	b.Set(0)
	b.Set(9)
	if b[0] != 0x80 || b[1] != 0x40 {
		t.Fatalf("bit order: % x, want 80 40 00", b)
	}
	if !b.Has(9) || b.Has(8) || b.Has(1<<30) {
		t.Fatal("Has wrong")
	}
	c := b.Clone()
	c.Set(1)
	if b.Has(1) {
		t.Fatal("Clone shares memory")
	}
	if Bitfield(nil).Clone() != nil {
		t.Fatal("Clone(nil) != nil")
	}
	// Padding bits and lengths.
	bad := NewBitfield(20)
	bad[2] = 0x01
	if err := bad.Check(20); !errors.Is(err, ErrInvalid) {
		t.Fatalf("padding bit set: %v", err)
	}
	if err := NewBitfield(21).Check(20); err != nil {
		t.Fatalf("21 and 20 chunks have the same length: %v", err)
	}
	if err := NewBitfield(30).Check(20); !errors.Is(err, ErrInvalid) {
		t.Fatalf("long bitfield: %v", err)
	}
}

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name string
		mod  func(r *AnnounceRequest)
		ok   bool
	}{
		{"valid", func(r *AnnounceRequest) {}, true},
		{"delta", func(r *AnnounceRequest) { r.Bitfield = nil; r.Delta = &Delta{Added: []uint32{3, 19, 3}} }, true},
		{"empty delta", func(r *AnnounceRequest) { r.Bitfield = nil; r.Delta = &Delta{} }, true},
		{"complete without bitfield", func(r *AnnounceRequest) { r.Bitfield = nil; r.Complete = true }, true},
		{"complete with full bitfield", func(r *AnnounceRequest) { r.Bitfield = FullBitfield(20); r.Complete = true }, true},
		{"stopped bare", func(r *AnnounceRequest) { r.Bitfield = nil; r.Addrs = nil; r.Event = EventStopped }, true},
		{"origin", func(r *AnnounceRequest) { r.Role = RoleOrigin }, true},
		{"no labels", func(r *AnnounceRequest) { r.Zone, r.Rack = "", "" }, true},
		{"limits", func(r *AnnounceRequest) {
			r.PeerID = long(MaxPeerIDLen)
			r.Zone = long(MaxLabelLen)
			r.Addrs = nil
			for i := range MaxAddrs {
				r.Addrs = append(r.Addrs, "/dns/"+long(MaxAddrLen-10)+string(rune('A'+i)))
			}
		}, true},
		{"max chunks", func(r *AnnounceRequest) { r.NumChunks = MaxNumChunks; r.Bitfield = NewBitfield(MaxNumChunks) }, true},

		{"zero blob", func(r *AnnounceRequest) { r.Blob = chunker.Digest{} }, false},
		{"no peer id", func(r *AnnounceRequest) { r.PeerID = "" }, false},
		{"long peer id", func(r *AnnounceRequest) { r.PeerID = long(MaxPeerIDLen + 1) }, false},
		{"peer id with space", func(r *AnnounceRequest) { r.PeerID = "a b" }, false},
		{"peer id with NUL", func(r *AnnounceRequest) { r.PeerID = "a\x00" }, false},
		{"no role", func(r *AnnounceRequest) { r.Role = "" }, false},
		{"bad role", func(r *AnnounceRequest) { r.Role = "seeder" }, false},
		{"bad event", func(r *AnnounceRequest) { r.Event = "paused" }, false},
		{"zero chunks", func(r *AnnounceRequest) { r.NumChunks = 0; r.Bitfield = Bitfield{} }, false},
		{"too many chunks", func(r *AnnounceRequest) { r.NumChunks = MaxNumChunks + 1; r.Bitfield = NewBitfield(MaxNumChunks + 1) }, false},
		{"short bitfield", func(r *AnnounceRequest) { r.Bitfield = r.Bitfield[:2] }, false},
		{"empty bitfield", func(r *AnnounceRequest) { r.Bitfield = Bitfield{} }, false},
		{"long bitfield", func(r *AnnounceRequest) { r.Bitfield = append(r.Bitfield, 0) }, false},
		{"padding bit", func(r *AnnounceRequest) { r.Bitfield[2] |= 1 }, false},
		{"bitfield and delta", func(r *AnnounceRequest) { r.Delta = &Delta{} }, false},
		{"neither", func(r *AnnounceRequest) { r.Bitfield = nil }, false},
		{"complete but partial", func(r *AnnounceRequest) { r.Complete = true }, false},
		{"delta out of range", func(r *AnnounceRequest) { r.Bitfield = nil; r.Delta = &Delta{Added: []uint32{20}} }, false},
		{"delta too long", func(r *AnnounceRequest) {
			r.Bitfield = nil
			r.Delta = &Delta{Added: make([]uint32, MaxDeltaAdded+1)}
		}, false},
		{"no addrs", func(r *AnnounceRequest) { r.Addrs = nil }, false},
		{"too many addrs", func(r *AnnounceRequest) {
			for i := range MaxAddrs {
				r.Addrs = append(r.Addrs, "/ip4/10.0.0.1/tcp/"+string(rune('0'+i%10))+long(i))
			}
		}, false},
		{"long addr", func(r *AnnounceRequest) { r.Addrs = []string{"/" + long(MaxAddrLen)} }, false},
		{"empty addr", func(r *AnnounceRequest) { r.Addrs = []string{""} }, false},
		{"relative addr", func(r *AnnounceRequest) { r.Addrs = []string{"ip4/1.2.3.4"} }, false},
		{"addr with space", func(r *AnnounceRequest) { r.Addrs = []string{"/ip4/1.2.3.4 /tcp/1"} }, false},
		{"addr with newline", func(r *AnnounceRequest) { r.Addrs = []string{"/ip4/1.2.3.4\n"} }, false},
		{"repeated addr", func(r *AnnounceRequest) { r.Addrs = []string{"/a", "/b", "/a"} }, false},
		{"long zone", func(r *AnnounceRequest) { r.Zone = long(MaxLabelLen + 1) }, false},
		{"bad rack", func(r *AnnounceRequest) { r.Rack = "r 1" }, false},
		{"origin bytes over total", func(r *AnnounceRequest) { r.Downloaded = 1; r.DownloadedFromOrigins = 2 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.mod(r)
			err := r.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if err != nil && len(err.Error()) > 400 {
				t.Errorf("error message is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, r := range []*AnnounceRequest{
		validRequest(),
		func() *AnnounceRequest {
			r := validRequest()
			r.Bitfield, r.Delta = nil, &Delta{Added: []uint32{1, 2}}
			r.Uploaded, r.Downloaded, r.DownloadedFromOrigins = 1<<40, 1<<41, 1<<39
			return r
		}(),
	} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseAnnounceRequest(b)
		if err != nil {
			t.Fatalf("Parse(%s): %v", b, err)
		}
		b2, _ := json.Marshal(got)
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the request:\n%s\n%s", b, b2)
		}
	}
	b, _ := json.Marshal(validRequest())
	for _, want := range []string{`"blob":"sha256:`, `"bitfield":"gAAQ"`, `"peer_id":`, `"num_chunks":20`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("encoding %s lacks %s", b, want)
		}
	}
}

func TestParseGarbage(t *testing.T) {
	valid, _ := json.Marshal(validRequest())
	tests := []struct {
		name string
		body string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"spaces", "  \n", ErrMalformed},
		{"not json", "hello", ErrMalformed},
		{"array", "[1,2]", ErrMalformed},
		{"null", "null", ErrInvalid},
		{"empty object", "{}", ErrInvalid},
		{"truncated", string(valid[:len(valid)/2]), ErrMalformed},
		{"trailing data", string(valid) + "{}", ErrMalformed},
		{"bad digest", strings.Replace(string(valid), "sha256:", "md5:", 1), ErrMalformed},
		{"upper-case digest", `{"blob":"sha256:` + strings.Repeat("A", 64) + `"}`, ErrMalformed},
		{"digest number", `{"blob":7}`, ErrMalformed},
		{"bitfield not base64", strings.Replace(string(valid), `"gAAQ"`, `"!!!!"`, 1), ErrMalformed},
		{"bitfield length", strings.Replace(string(valid), `"gAAQ"`, `"gAAQAA=="`, 1), ErrInvalid},
		{"negative chunks", strings.Replace(string(valid), `"num_chunks":20`, `"num_chunks":-1`, 1), ErrMalformed},
		{"huge chunks", strings.Replace(string(valid), `"num_chunks":20`, `"num_chunks":99999999999`, 1), ErrMalformed},
		{"oversized", `{"peer_id":"` + strings.Repeat("x", MaxRequestBytes) + `"}`, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAnnounceRequest(strings.NewReader(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
		})
	}
	// Unknown fields are ignored for forward compatibility.
	extra := strings.Replace(string(valid), "{", `{"future_field":[1,2,3],`, 1)
	if _, err := ParseAnnounceRequest([]byte(extra)); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestDecodeMaxBytesReader(t *testing.T) {
	rec := httptest.NewRecorder()
	body := io.NopCloser(strings.NewReader(strings.Repeat(" ", 100)))
	r := http.MaxBytesReader(rec, body, 10)
	if _, err := DecodeAnnounceRequest(r); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode = %v, want ErrTooLarge", err)
	}
}

func TestPaths(t *testing.T) {
	if got, want := SwarmPath(testBlob), "/v1/swarms/"+testBlob.String(); got != want {
		t.Fatalf("SwarmPath = %q, want %q", got, want)
	}
	if RouteSwarm != "GET /v1/swarms/{digest}" || RouteAnnounce != "POST /v1/announce" {
		t.Fatalf("routes: %q %q", RouteSwarm, RouteAnnounce)
	}
	if (&AnnounceResponse{Interval: 5}).IntervalDuration().Seconds() != 5 {
		t.Fatal("IntervalDuration")
	}
}
