package peerwire

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkDataRoundTrip encodes Data frames into a buffer and decodes
// them again, the per-frame work of both ends of a transfer (two copies of
// the payload: into the stream and out of it).
func BenchmarkDataRoundTrip(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10, MaxDataPayload} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			m := Data{ReqID: 1, Total: uint32(size), Payload: pattern(size)}
			var stream bytes.Buffer
			stream.Grow(size + 64)
			d := NewDecoder(&stream, 0)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := Encode(&stream, m); err != nil {
					b.Fatal(err)
				}
				got, err := d.Next()
				if err != nil {
					b.Fatal(err)
				}
				if len(got.(Data).Payload) != size {
					b.Fatal("short payload")
				}
			}
		})
	}
}

// BenchmarkSmallRoundTrip measures per-frame overhead with Have frames.
func BenchmarkSmallRoundTrip(b *testing.B) {
	m := Have{Blob: blobA, Index: 7}
	var stream bytes.Buffer
	d := NewDecoder(&stream, 0)
	b.ReportAllocs()
	for b.Loop() {
		if err := Encode(&stream, m); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDataIntoChunk decodes 256 KiB Data frames into a 4 MiB chunk
// buffer, as a peer receiving a chunk does: "copy" decodes into the
// Decoder's buffer and copies the payload over, "dst" reads it there
// straight (SetDataDst).
func BenchmarkDataIntoChunk(b *testing.B) {
	const piece, total = 256 << 10, 4 << 20
	var frames []byte
	for off := 0; off < total; off += piece {
		var err error
		frames, err = AppendFrame(frames, Data{ReqID: 1, Offset: uint32(off), Total: total, Payload: pattern(piece)})
		if err != nil {
			b.Fatal(err)
		}
	}
	chunk := make([]byte, total)
	for _, direct := range []bool{false, true} {
		name := "copy"
		if direct {
			name = "dst"
		}
		b.Run(name, func(b *testing.B) {
			r := bytes.NewReader(frames)
			d := NewDecoder(r, 0)
			if direct {
				d.SetDataDst(func(_, off, _ uint32, n int) []byte { return chunk[off : int(off)+n] })
			}
			b.SetBytes(total)
			for b.Loop() {
				r.Reset(frames)
				for range total / piece {
					m, err := d.Next()
					if err != nil {
						b.Fatal(err)
					}
					if dm := m.(Data); !direct {
						copy(chunk[dm.Offset:], dm.Payload)
					}
				}
			}
		})
	}
}
