package peerwire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/chunker"
)

var (
	blobA  = chunker.Sum([]byte("blob a"))
	chunkB = chunker.Sum([]byte("chunk b"))
)

// pattern returns n bytes that differ at every offset modulo 251 (nil for
// n = 0, as the Decoder returns empty slices).
func pattern(n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// roundTrips are valid messages, covering every type and the boundaries of
// every limit. Empty slices are nil, as the Decoder returns them.
func roundTrips() []struct {
	name string
	m    Message
} {
	return []struct {
		name string
		m    Message
	}{
		{"hello", Hello{Version: Version, PeerID: "12D3KooWExamplePeer", Features: 0xdeadbeef}},
		{"hello empty peer", Hello{}},
		{"hello max peer", Hello{Version: 0xffff, PeerID: strings.Repeat("p", MaxPeerIDLen)}},
		{"hello utf8 peer", Hello{Version: 2 << 8, PeerID: "pé€r"}},
		{"interested", Interested{Blob: blobA}},
		{"interested zero", Interested{}},
		{"bitfield empty", Bitfield{Blob: blobA}},
		{"bitfield 1", Bitfield{Blob: blobA, NumChunks: 1, Bits: []byte{0x80}}},
		{"bitfield 8", Bitfield{Blob: blobA, NumChunks: 8, Bits: []byte{0xa5}}},
		{"bitfield 9", Bitfield{Blob: blobA, NumChunks: 9, Bits: []byte{0xff, 0x80}}},
		{"bitfield max", Bitfield{Blob: blobA, NumChunks: chunker.MaxManifestChunks, Bits: bytes.Repeat([]byte{0xff}, MaxBitfieldBytes)}},
		{"have", Have{Blob: blobA, Index: 7}},
		{"have max", Have{Blob: blobA, Index: chunker.MaxManifestChunks - 1}},
		{"get manifest", GetManifest{ReqID: 1, Blob: blobA}},
		{"manifest data empty", ManifestData{ReqID: 2, Offset: 0, Total: 0}},
		{"manifest data", ManifestData{ReqID: 2, Offset: 10, Total: 100, Data: pattern(90)}},
		{"manifest data max", ManifestData{ReqID: 0xffffffff, Offset: chunker.MaxManifestBytes - MaxDataPayload, Total: chunker.MaxManifestBytes, Data: pattern(MaxDataPayload)}},
		{"request", Request{ReqID: 3, Chunk: chunkB, Offset: 4096, Length: 1 << 20}},
		{"request to end", Request{ReqID: 3, Chunk: chunkB}},
		{"request max", Request{ReqID: 3, Chunk: chunkB, Offset: 1, Length: chunker.MaxChunkSizeLimit - 1}},
		{"request escalated", Request{ReqID: 3, Chunk: chunkB, Flags: RequestEscalated}},
		{"request unknown flags", Request{ReqID: 3, Chunk: chunkB, Flags: 0xff}},
		{"data empty", Data{ReqID: 4, Offset: 5, Total: 5}},
		{"data 1", Data{ReqID: 4, Offset: 0, Total: 1, Payload: []byte{42}}},
		{"data max", Data{ReqID: 4, Offset: 3 << 20, Total: 4 << 20, Payload: pattern(MaxDataPayload)}},
		{"data at limit", Data{ReqID: 4, Offset: chunker.MaxChunkSizeLimit - 10, Total: chunker.MaxChunkSizeLimit, Payload: pattern(10)}},
		{"cancel", Cancel{ReqID: 5}},
		{"received", Received{ReqID: 6}},
		{"reject", Reject{ReqID: 6, Code: RejectBusy, Reason: "upload slots full"}},
		{"reject session", Reject{Code: RejectVersion}},
		{"reject unknown code", Reject{ReqID: 6, Code: 0xffff, Reason: strings.Repeat("r", MaxReasonLen)}},
		{"ping", Ping{Nonce: 0x0102030405060708}},
		{"pong", Pong{Nonce: ^uint64(0)}},
	}
}

func TestRoundTrip(t *testing.T) {
	seen := map[Type]bool{}
	for _, tc := range roundTrips() {
		t.Run(tc.name, func(t *testing.T) {
			seen[tc.m.Type()] = true
			frame, err := AppendFrame(nil, tc.m)
			if err != nil {
				t.Fatalf("AppendFrame: %v", err)
			}
			if got := int(be.Uint32(frame)); got != len(frame)-4 {
				t.Fatalf("length prefix %d, frame has %d bytes after it", got, len(frame)-4)
			}
			if Type(frame[4]) != tc.m.Type() {
				t.Fatalf("type byte %d, want %d", frame[4], tc.m.Type())
			}
			var w bytes.Buffer
			if err := Encode(&w, tc.m); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(w.Bytes(), frame) {
				t.Fatalf("Encode and AppendFrame differ:\n%x\n%x", w.Bytes(), frame)
			}
			// A pointer encodes like the value.
			p := reflect.New(reflect.TypeOf(tc.m))
			p.Elem().Set(reflect.ValueOf(tc.m))
			if pf, err := AppendFrame(nil, p.Interface().(Message)); err != nil || !bytes.Equal(pf, frame) {
				t.Fatalf("pointer encodes differently: %v", err)
			}

			d := NewDecoder(bytes.NewReader(frame), 0)
			got, err := d.Next()
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Fatalf("decoded %#v\nwant %#v", short(got), short(tc.m))
			}
			if _, err := d.Next(); err != io.EOF {
				t.Fatalf("after the only frame: %v, want io.EOF", err)
			}
		})
	}
	for ty := TypeHello; ty <= TypeReceived; ty++ {
		if !seen[ty] {
			t.Errorf("no round-trip case for %s", ty)
		}
	}
}

// short keeps failure messages about megabyte payloads readable.
func short(m Message) any {
	s := reflect.ValueOf(m)
	for i := 0; i < s.NumField(); i++ {
		if b, ok := s.Field(i).Interface().([]byte); ok && len(b) > 32 {
			return hex.EncodeToString(b[:32]) + "..."
		}
	}
	return m
}

// TestGoldenFrames pins the byte layout of each message.
func TestGoldenFrames(t *testing.T) {
	d := chunker.Digest{0: 0xaa, 31: 0xbb}
	dh := hex.EncodeToString(d[:])
	tests := []struct {
		m    Message
		want string
	}{
		{Hello{Version: 0x0102, PeerID: "ab", Features: 0x03040506}, "0000000b" + "01" + "0102" + "03040506" + "0002" + "6162"},
		{Interested{Blob: d}, "00000021" + "02" + dh},
		{Bitfield{Blob: d, NumChunks: 10, Bits: []byte{0x81, 0x40}}, "00000027" + "03" + dh + "0000000a" + "8140"},
		{Have{Blob: d, Index: 0x000a0b0c}, "00000025" + "04" + dh + "000a0b0c"},
		{GetManifest{ReqID: 0x11223344, Blob: d}, "00000025" + "05" + "11223344" + dh},
		{ManifestData{ReqID: 1, Offset: 2, Total: 5, Data: []byte{9, 8}}, "0000000f" + "06" + "00000001" + "00000002" + "00000005" + "0908"},
		{Request{ReqID: 1, Chunk: d, Offset: 2, Length: 3}, "0000002d" + "07" + "00000001" + dh + "00000002" + "00000003"},
		{Data{ReqID: 1, Offset: 2, Total: 3, Payload: []byte{7}}, "0000000e" + "08" + "00000001" + "00000002" + "00000003" + "07"},
		{Cancel{ReqID: 0x01020304}, "00000005" + "09" + "01020304"},
		{Received{ReqID: 0x01020304}, "00000005" + "0d" + "01020304"},
		{Reject{ReqID: 1, Code: RejectNotFound, Reason: "x"}, "0000000a" + "0a" + "00000001" + "0001" + "0001" + "78"},
		{Ping{Nonce: 0x0102030405060708}, "00000009" + "0b" + "0102030405060708"},
		{Pong{Nonce: 1}, "00000009" + "0c" + "0000000000000001"},
	}
	for _, tc := range tests {
		got, err := AppendFrame([]byte("prefix"), tc.m)
		if err != nil {
			t.Fatalf("%s: %v", tc.m.Type(), err)
		}
		if !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("%s: AppendFrame overwrote dst", tc.m.Type())
		}
		if h := hex.EncodeToString(got[len("prefix"):]); h != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.m.Type(), h, tc.want)
		}
	}
}

// invalidMessages break one limit each; the encoder must refuse them and
// the decoder must refuse their frames (built by forceFrame).
func invalidMessages() []struct {
	name string
	m    Message
} {
	return []struct {
		name string
		m    Message
	}{
		{"peer ID too long", Hello{PeerID: strings.Repeat("p", MaxPeerIDLen+1)}},
		{"peer ID not utf8", Hello{PeerID: "\xff"}},
		{"bitfield over max chunks", Bitfield{NumChunks: chunker.MaxManifestChunks + 8, Bits: make([]byte, MaxBitfieldBytes+1)}},
		{"bitfield bits short", Bitfield{NumChunks: 9, Bits: []byte{0}}},
		{"bitfield bits long", Bitfield{NumChunks: 8, Bits: []byte{0, 0}}},
		{"bitfield bits without chunks", Bitfield{NumChunks: 0, Bits: []byte{0}}},
		{"bitfield spare bit", Bitfield{NumChunks: 9, Bits: []byte{0xff, 0x40}}},
		{"bitfield last spare bit", Bitfield{NumChunks: 1, Bits: []byte{0x01}}},
		{"have index", Have{Index: chunker.MaxManifestChunks}},
		{"get manifest req 0", GetManifest{}},
		{"manifest data req 0", ManifestData{Total: 1, Data: []byte{1}}},
		{"manifest data too big", ManifestData{ReqID: 1, Total: MaxDataPayload + 1, Data: make([]byte, MaxDataPayload+1)}},
		{"manifest data past total", ManifestData{ReqID: 1, Offset: 1, Total: 2, Data: []byte{1, 2}}},
		{"manifest data offset past total", ManifestData{ReqID: 1, Offset: 3, Total: 2}},
		{"manifest total over limit", ManifestData{ReqID: 1, Total: chunker.MaxManifestBytes + 1}},
		{"request req 0", Request{Length: 1}},
		{"request past limit", Request{ReqID: 1, Offset: chunker.MaxChunkSizeLimit, Length: 1}},
		{"request offset past limit", Request{ReqID: 1, Offset: chunker.MaxChunkSizeLimit + 1}},
		{"request overflow", Request{ReqID: 1, Offset: 0xffffffff, Length: 0xffffffff}},
		{"data req 0", Data{Total: 1, Payload: []byte{1}}},
		{"data too big", Data{ReqID: 1, Total: MaxDataPayload + 1, Payload: make([]byte, MaxDataPayload+1)}},
		{"data past total", Data{ReqID: 1, Offset: 10, Total: 10, Payload: []byte{1}}},
		{"data offset overflow", Data{ReqID: 1, Offset: 0xffffffff, Total: 0xffffffff, Payload: []byte{1}}},
		{"data total over limit", Data{ReqID: 1, Total: chunker.MaxChunkSizeLimit + 1}},
		{"cancel req 0", Cancel{}},
		{"received req 0", Received{}},
		{"reason too long", Reject{ReqID: 1, Reason: strings.Repeat("r", MaxReasonLen+1)}},
		{"reason not utf8", Reject{ReqID: 1, Reason: "bad \xc3("}},
	}
}

// forceFrame encodes m without validating it.
func forceFrame(m Message) []byte {
	b := append([]byte{0, 0, 0, 0, byte(m.Type())}, m.appendFields(nil)...)
	b = append(b, m.bulk()...)
	be.PutUint32(b, uint32(len(b)-4))
	return b
}

func TestEncodeRejectsInvalid(t *testing.T) {
	for _, tc := range invalidMessages() {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := AppendFrame(dst, tc.m)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("AppendFrame error %v, want ErrMalformed", err)
			}
			if string(got) != "keep" {
				t.Fatalf("AppendFrame changed dst to %q", got)
			}
			var w bytes.Buffer
			if err := Encode(&w, tc.m); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Encode error %v, want ErrMalformed", err)
			}
			if w.Len() != 0 {
				t.Fatalf("Encode wrote %d bytes of an invalid message", w.Len())
			}
			t.Logf("%v", err)
		})
	}
	if _, err := AppendFrame(nil, nil); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("AppendFrame(nil) error %v, want ErrUnknownType", err)
	}
	if err := Encode(io.Discard, nil); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("Encode(nil) error %v, want ErrUnknownType", err)
	}
}

// TestFrameLimits checks that every type's largest payload fits in
// MaxFrameSize, and that the bounds match what the encoder produces.
func TestFrameLimits(t *testing.T) {
	for ty := TypeHello; ty <= TypeReceived; ty++ {
		l, ok := lookup(ty)
		if !ok {
			t.Fatalf("no layout for %s", ty)
		}
		if 1+l.max > MaxFrameSize {
			t.Errorf("%s: largest frame %d bytes, MaxFrameSize %d", ty, 1+l.max, MaxFrameSize)
		}
	}
	for _, ty := range []Type{0, TypeReceived + 1, 255} {
		if _, ok := lookup(ty); ok {
			t.Errorf("type %d has a layout", ty)
		}
	}
	// The largest and smallest valid frames of each type hit the bounds.
	minLen, maxLen := map[Type]int{}, map[Type]int{}
	for _, tc := range roundTrips() {
		f, err := AppendFrame(nil, tc.m)
		if err != nil {
			t.Fatal(err)
		}
		n, ty := len(f)-frameHeaderLen, tc.m.Type()
		if v, ok := minLen[ty]; !ok || n < v {
			minLen[ty] = n
		}
		maxLen[ty] = max(maxLen[ty], n)
	}
	for ty := TypeHello; ty <= TypeReceived; ty++ {
		l, _ := lookup(ty)
		if minLen[ty] != l.min || maxLen[ty] != l.max {
			t.Errorf("%s: round trips span payloads %d..%d bytes, layout says %d..%d", ty, minLen[ty], maxLen[ty], l.min, l.max)
		}
	}
}

func TestNames(t *testing.T) {
	if s := TypeManifestData.String(); s != "ManifestData" {
		t.Errorf("TypeManifestData.String() = %q", s)
	}
	if s := Type(99).String(); s != "Type(99)" {
		t.Errorf("Type(99).String() = %q", s)
	}
	if s := RejectBusy.String(); s != "Busy" {
		t.Errorf("RejectBusy.String() = %q", s)
	}
	if s := RejectCode(77).String(); s != "RejectCode(77)" {
		t.Errorf("RejectCode(77).String() = %q", s)
	}
	for ty := TypeHello; ty <= TypeReceived; ty++ {
		if strings.HasPrefix(ty.String(), "Type(") {
			t.Errorf("type %d has no name", ty)
		}
	}
}

func TestVersion(t *testing.T) {
	if VersionMajor(Version) != 1 || VersionMinor(Version) != 1 {
		t.Fatalf("Version = %#04x, want 1.1", Version)
	}
	for _, tc := range []struct {
		v  uint16
		ok bool
	}{{Version, true}, {1<<8 | 7, true}, {2 << 8, false}, {0, false}, {1, false}} {
		if got := Compatible(tc.v); got != tc.ok {
			t.Errorf("Compatible(%#04x) = %v, want %v", tc.v, got, tc.ok)
		}
	}
}
