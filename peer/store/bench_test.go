package store

import (
	"context"
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/p2pd/p2pd/chunker"
)

const benchChunkSize = 1 << 20

// quiet keeps the store's logs out of benchmark output.
var quiet = WithLogger(slog.New(slog.DiscardHandler))

// BenchmarkPut stores distinct 1 MiB chunks (hash, write, fsync, rename,
// directory fsync). Preparing each chunk and its digest is not timed.
func BenchmarkPut(b *testing.B) {
	s := openStore(b, DefaultConfig(b.TempDir()), quiet)
	ctx := context.Background()
	data := chunkData(1, benchChunkSize)
	b.SetBytes(benchChunkSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		binary.LittleEndian.PutUint64(data, uint64(i))
		d := chunker.Sum(data)
		b.StartTimer()
		if err := s.Put(ctx, d, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet reads 1 MiB chunks back, with and without re-hashing.
func BenchmarkGet(b *testing.B) {
	for _, verify := range []VerifyMode{VerifyAlways, VerifyNever} {
		b.Run(string(verify), func(b *testing.B) {
			cfg := DefaultConfig(b.TempDir())
			cfg.VerifyOnRead = verify
			s := openStore(b, cfg, quiet)
			ctx := context.Background()
			var ds []chunker.Digest
			for i := range 16 {
				ds = append(ds, mustPut(b, s, chunkData(uint64(i), benchChunkSize)))
			}
			buf := make([]byte, benchChunkSize)
			b.SetBytes(benchChunkSize)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				got, err := s.ReadChunk(ctx, ds[i%len(ds)], buf)
				if err != nil || len(got) != benchChunkSize {
					b.Fatal(err)
				}
			}
		})
	}
}
