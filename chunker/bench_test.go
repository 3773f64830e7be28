package chunker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	sha256simd "github.com/minio/sha256-simd"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
)

// The standard library's SHA-256 was chosen over minio/sha256-simd by
// measurement; this keeps the comparison runnable (make bench).
func BenchmarkSHA256(b *testing.B) {
	data := chunkertest.Bytes(1, 4<<20)
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sha256.Sum256(data)
		}
	})
	b.Run("sha256-simd", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sha256simd.Sum256(data)
		}
	})
}

func BenchmarkSplit(b *testing.B) {
	data := chunkertest.Bytes(1, 64<<20)
	c, _ := chunker.New(chunker.Config{})
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := c.Split(context.Background(), bytes.NewReader(data), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	data := chunkertest.Bytes(1, 64<<20)
	c, _ := chunker.New(chunker.Config{})
	m, _ := c.Split(context.Background(), bytes.NewReader(data), nil)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := chunker.Verify(context.Background(), m, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
