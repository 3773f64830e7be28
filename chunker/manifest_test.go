package chunker_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
)

var smallCfg = chunker.Config{MinSize: 1 << 10, AvgSize: 4 << 10, MaxSize: 16 << 10}

func sample(t testing.TB) ([]byte, *chunker.Manifest, []byte) {
	t.Helper()
	data := chunkertest.Bytes(11, 40<<10)
	m := split(t, mustNew(t, smallCfg), data)
	enc, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return data, m, enc
}

func TestManifestID(t *testing.T) {
	_, m, enc := sample(t)
	id, err := m.ID()
	if err != nil || id != chunker.Sum(enc) {
		t.Fatalf("ID() = %s, %v; want the SHA-256 of the encoding", id, err)
	}
	m.Chunks[0].Digest[0] ^= 1
	if id2, _ := m.ID(); id2 == id {
		t.Fatal("ID did not change with a chunk digest")
	}
}

func TestDecodeManifestErrors(t *testing.T) {
	_, _, enc := sample(t)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(enc)) }
	be := binary.BigEndian
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, chunker.ErrManifestCorrupt},
		{"truncated header", enc[:30], chunker.ErrManifestCorrupt},
		{"truncated body", enc[:len(enc)-1], chunker.ErrManifestCorrupt},
		{"trailing byte", append(bytes.Clone(enc), 0), chunker.ErrManifestCorrupt},
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b }), chunker.ErrManifestCorrupt},
		{"future version", mutate(func(b []byte) []byte { be.PutUint16(b[4:], 2); return b }), chunker.ErrUnsupportedVersion},
		{"reserved flags", mutate(func(b []byte) []byte { be.PutUint16(b[6:], 1); return b }), chunker.ErrManifestCorrupt},
		{"size too large", mutate(func(b []byte) []byte { be.PutUint64(b[20:], be.Uint64(b[20:])+1); return b }), chunker.ErrManifestInconsistent},
		{"chunk count huge", mutate(func(b []byte) []byte { be.PutUint32(b[60:], 1<<31); return b }), chunker.ErrManifestTooLarge},
		{"chunk over max", mutate(func(b []byte) []byte { be.PutUint32(b[64:], 1<<20); return b }), chunker.ErrChunkTooLarge},
		{"empty chunk", mutate(func(b []byte) []byte { be.PutUint32(b[64:], 0); return b }), chunker.ErrManifestInconsistent},
		{"avg not power of two", mutate(func(b []byte) []byte { be.PutUint32(b[12:], 5000); return b }), chunker.ErrManifestInconsistent},
		{"oversized input", make([]byte, chunker.MaxManifestBytes+1), chunker.ErrManifestTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := chunker.DecodeManifest(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeManifest: got %v, %v; want %v", m, err, tc.want)
			}
		})
	}
	for n := range len(enc) { // every truncation is refused
		if _, err := chunker.DecodeManifest(enc[:n]); err == nil {
			t.Fatalf("truncation to %d bytes was accepted", n)
		}
	}
}

func TestVerify(t *testing.T) {
	data, m, _ := sample(t)
	ctx := context.Background()
	flip := bytes.Clone(data)
	flip[len(flip)/2] ^= 0x40
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"intact", data, nil},
		{"flipped bit", flip, chunker.ErrDigestMismatch},
		{"truncated", data[:len(data)-1], chunker.ErrSizeMismatch},
		{"truncated at a chunk boundary", data[:m.Offsets()[2]], chunker.ErrSizeMismatch},
		{"extra byte", append(bytes.Clone(data), 0), chunker.ErrSizeMismatch},
		{"empty", nil, chunker.ErrSizeMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := chunker.Verify(ctx, m, bytes.NewReader(tc.data))
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Verify: got %v, want %v", err, tc.want)
			}
		})
	}
	// A manifest that lies about the blob digest alone is caught too.
	bad := *m
	bad.Digest[3] ^= 1
	if err := chunker.Verify(ctx, &bad, bytes.NewReader(data)); !errors.Is(err, chunker.ErrDigestMismatch) {
		t.Fatalf("wrong blob digest: got %v", err)
	}
}

func TestDigestParse(t *testing.T) {
	d := chunker.Sum([]byte("hello"))
	tests := []struct {
		in string
		ok bool
	}{
		{d.String(), true},
		{"sha256:" + d.Hex()[:63], false},
		{"sha512:" + d.Hex(), false},
		{d.Hex(), false},
		{"sha256:" + string(bytes.ToUpper([]byte(d.Hex()))), false},
		{"sha256:" + d.Hex() + "0", false},
		{"sha256:" + d.Hex()[:62] + "zz", false},
	}
	for _, tc := range tests {
		got, err := chunker.ParseDigest(tc.in)
		if tc.ok != (err == nil) || tc.ok && got != d {
			t.Errorf("ParseDigest(%q) = %s, %v; want ok=%v", tc.in, got, err, tc.ok)
		}
		if err != nil && !errors.Is(err, chunker.ErrBadDigest) {
			t.Errorf("ParseDigest(%q) error %v does not wrap ErrBadDigest", tc.in, err)
		}
	}
}

// FuzzDecodeManifest: the decoder never panics, never accepts an invalid
// manifest, and anything it accepts re-encodes to the same bytes.
func FuzzDecodeManifest(f *testing.F) {
	_, _, enc := sample(f)
	f.Add(enc)
	f.Add(enc[:70])
	empty, _ := (&chunker.Manifest{Version: 1, Digest: chunker.Sum(nil), MinSize: 64, AvgSize: 128, MaxSize: 256}).MarshalBinary()
	f.Add(empty)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := chunker.DecodeManifest(b)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded an invalid manifest: %v", err)
		}
		again, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("not canonical: re-encoding differs (%v)", err)
		}
	})
}

func TestParseManifestJSON(t *testing.T) {
	_, m, enc := sample(t)
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"binary": enc, "json": js} {
		got, err := chunker.ParseManifest(in)
		if err != nil || !got.Equal(m) {
			t.Fatalf("%s: ParseManifest = %v", name, err)
		}
	}
	bad := map[string]struct {
		in   string
		want error
	}{
		"unknown field": {strings.Replace(string(js), `"version"`, `"versions"`, 1), chunker.ErrManifestCorrupt},
		"trailing":      {string(js) + "{}", chunker.ErrManifestCorrupt},
		"bad digest":    {strings.Replace(string(js), `"sha256:`, `"sha256:zz`, 1), chunker.ErrManifestCorrupt},
		"sizes lie":     {strings.Replace(string(js), `"size":40960`, `"size":40961`, 1), chunker.ErrManifestInconsistent},
		"not json":      {"hello", chunker.ErrManifestCorrupt},
	}
	for name, tc := range bad {
		if _, err := chunker.ParseManifest([]byte(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

// FuzzParseManifest covers the JSON path of ParseManifest as well.
func FuzzParseManifest(f *testing.F) {
	_, m, enc := sample(f)
	js, _ := json.Marshal(m)
	f.Add(enc)
	f.Add(js)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := chunker.ParseManifest(b)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed an invalid manifest: %v", err)
		}
		if _, err := m.MarshalBinary(); err != nil {
			t.Fatalf("parsed manifest does not encode: %v", err)
		}
	})
}
