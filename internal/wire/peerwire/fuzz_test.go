package peerwire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the generated seeds in testdata/fuzz/FuzzDecode")

const seedDir = "testdata/fuzz/FuzzDecode"

// seeds are small inputs for FuzzDecode: one valid frame of every type, a
// stream of several, and frames that are wrong in the ways the decoder
// checks. They are also committed under seedDir (go test -run
// TestSeedCorpus -update-seeds rewrites them).
func seeds() map[string][]byte {
	must := func(m Message) []byte {
		b, err := AppendFrame(nil, m)
		if err != nil {
			panic(err)
		}
		return b
	}
	bf := NewBitset(20)
	for _, i := range []int{0, 3, 7, 8, 19} {
		bf.Set(i)
	}
	frames := []Message{
		Hello{Version: Version, PeerID: "12D3KooWSeed", Features: 1},
		Interested{Blob: blobA},
		bf.Bitfield(blobA),
		Have{Blob: blobA, Index: 19},
		GetManifest{ReqID: 1, Blob: blobA},
		ManifestData{ReqID: 1, Offset: 4, Total: 40, Data: []byte("P2PM\x00\x01")},
		Request{ReqID: 2, Chunk: chunkB, Offset: 16, Length: 32},
		Request{ReqID: 4, Chunk: chunkB, Flags: RequestEscalated},
		Reject{ReqID: 4, Code: RejectDeferred, Reason: "sent elsewhere"},
		Data{ReqID: 2, Offset: 16, Total: 64, Payload: pattern(32)},
		Cancel{ReqID: 2},
		Reject{ReqID: 3, Code: RejectNotFound, Reason: "no such chunk"},
		Ping{Nonce: 42},
		Pong{Nonce: 42},
		Received{ReqID: 2},
	}
	out := map[string][]byte{}
	var stream []byte
	for _, m := range frames {
		f := must(m)
		out["valid-"+strings.ToLower(m.Type().String())] = f
		stream = append(stream, f...)
	}
	out["stream-all-types"] = stream
	out["empty-data"] = must(Data{ReqID: 9, Offset: 3, Total: 3})
	out["empty-bitfield"] = must(Bitfield{Blob: blobA})

	badPad := must(Bitfield{Blob: blobA, NumChunks: 3, Bits: []byte{0xa0}})
	badPad[len(badPad)-1] |= 0x01
	out["bad-bitfield-padding"] = badPad
	out["trailing-byte"] = append(must(Ping{Nonce: 1}), 0)
	trailing := out["trailing-byte"]
	be.PutUint32(trailing, uint32(len(trailing)-4))
	out["huge-length"] = be.AppendUint32(nil, 2<<30)
	out["unknown-type"] = append(be.AppendUint32(nil, 2), 0xee, 0)
	out["truncated"] = must(Request{ReqID: 2, Chunk: chunkB})[:20]
	long := forceFrame(Reject{ReqID: 1, Reason: strings.Repeat("r", MaxReasonLen+1)})
	out["reason-too-long"] = long
	out["data-past-total"] = forceFrame(Data{ReqID: 1, Offset: 60, Total: 64, Payload: pattern(8)})
	out["req-id-zero"] = forceFrame(Cancel{})
	return out
}

// checkDecode decodes in with the given frame limit and checks that every
// message re-encodes to exactly the bytes it was decoded from, that the
// buffer stays within the limit, and that decoding ends in io.EOF exactly at
// the end of the input or in one of the documented errors.
func checkDecode(t *testing.T, in []byte, limit int) (types []Type) {
	cr := &countingReader{r: bytes.NewReader(in)}
	d := NewDecoder(cr, limit)
	start := 0
	for {
		m, err := d.Next()
		if cap(d.buf) > d.max {
			t.Fatalf("limit %d: buffer grew to %d", d.max, cap(d.buf))
		}
		if err != nil {
			switch {
			case err == io.EOF:
				if start != len(in) {
					t.Fatalf("io.EOF after %d of %d bytes", start, len(in))
				}
			case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrUnknownType),
				errors.Is(err, ErrMalformed), errors.Is(err, io.ErrUnexpectedEOF):
			default:
				t.Fatalf("undocumented error %v", err)
			}
			return types
		}
		frame := in[start:cr.n]
		again, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("decoded %T at offset %d does not re-encode: %v", m, start, err)
		}
		if !bytes.Equal(again, frame) {
			t.Fatalf("%T at offset %d is not canonical:\n read %x\nwrote %x", m, start, frame, again)
		}
		var w bytes.Buffer
		if err := Encode(&w, m); err != nil || !bytes.Equal(w.Bytes(), frame) {
			t.Fatalf("Encode of %T differs from AppendFrame: %v", m, err)
		}
		types = append(types, m.Type())
		start = cr.n
	}
}

// checkDataDst decodes in with and without SetDataDst (which takes every
// other Data payload) and checks that both give the same messages, that
// the payloads taken went where dst said, and that both end alike.
func checkDataDst(t *testing.T, in []byte) {
	decodeAll := func(dst DataDst) (frames [][]byte, payloads [][]byte, err error) {
		d := NewDecoder(bytes.NewReader(in), 0)
		d.SetDataDst(dst)
		for {
			m, err := d.Next()
			if err != nil {
				return frames, payloads, err
			}
			f, ferr := AppendFrame(nil, m)
			if ferr != nil {
				t.Fatalf("decoded %T does not re-encode: %v", m, ferr)
			}
			frames = append(frames, f)
			if dm, ok := m.(Data); ok {
				payloads = append(payloads, dm.Payload)
			}
		}
	}
	want, _, wantErr := decodeAll(nil)
	var given [][]byte
	calls := 0
	got, payloads, gotErr := decodeAll(func(req, off, total uint32, n int) []byte {
		calls++
		if uint64(off)+uint64(n) > uint64(total) || req == 0 {
			t.Fatalf("dst asked for an invalid piece: req %d, %d bytes at %d of %d", req, n, off, total)
		}
		if calls%2 == 0 {
			return nil
		}
		b := make([]byte, n)
		given = append(given, b)
		return b
	})
	if len(got) != len(want) {
		t.Fatalf("with a DataDst %d frames decode, without %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs with a DataDst:\n%x\n%x", i, got[i], want[i])
		}
	}
	if (gotErr == io.EOF) != (wantErr == io.EOF) {
		t.Fatalf("with a DataDst decoding ends in %v, without in %v", gotErr, wantErr)
	}
	for i, b := range given {
		if i*2 < len(payloads) && len(b) > 0 && &payloads[i*2][0] != &b[0] {
			t.Fatalf("payload %d was not read into the slice dst returned", i*2)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzDecode(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkDecode(t, in, 0)
		checkDecode(t, in, 64)
		checkDataDst(t, in)
	})
}

// TestSeedCorpus checks that the committed corpus decodes to every message
// type (and rewrites the generated part of it with -update-seeds).
func TestSeedCorpus(t *testing.T) {
	if *updateSeeds {
		if err := os.MkdirAll(seedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds() {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(seedDir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(seedDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Type]bool{}
	for _, file := range files {
		in := readCorpusFile(t, file)
		for _, ty := range checkDecode(t, in, 0) {
			seen[ty] = true
		}
	}
	for ty := TypeHello; ty <= TypeReceived; ty++ {
		if !seen[ty] {
			t.Errorf("no file in %s decodes to a %s", seedDir, ty)
		}
	}
	for name, b := range seeds() {
		if in := readCorpusFile(t, filepath.Join(seedDir, name)); !bytes.Equal(in, b) {
			t.Errorf("%s/%s is stale; run go test -run TestSeedCorpus -update-seeds", seedDir, name)
		}
	}
}

// readCorpusFile parses a file in the "go test fuzz v1" format holding one
// []byte value.
func readCorpusFile(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a one-value fuzz corpus file", file)
	}
	q, ok := strings.CutPrefix(lines[1], "[]byte(")
	if q, ok = strings.CutSuffix(q, ")"); !ok {
		t.Fatalf("%s: value is not []byte(...)", file)
	}
	s, err := strconv.Unquote(q)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return []byte(s)
}
