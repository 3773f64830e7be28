package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/p2pd/p2pd/chunker"
)

// storeBlob splits size random bytes into small chunks, stores them and
// returns the data and its manifest.
func storeBlob(t testing.TB, s *Store, seed uint64, size int) ([]byte, *chunker.Manifest) {
	t.Helper()
	c, err := chunker.New(chunker.Config{MinSize: 1 << 10, AvgSize: 4 << 10, MaxSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	data := chunkData(seed, size)
	m, err := c.Split(context.Background(), bytes.NewReader(data), func(ch chunker.Chunk, b []byte) error {
		return s.Put(context.Background(), ch.Digest, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Chunks) < 10 {
		t.Fatalf("only %d chunks; the tests need more", len(m.Chunks))
	}
	return data, m
}

func openBlob(t testing.TB, s *Store, m *chunker.Manifest) *BlobReader {
	t.Helper()
	r, err := s.OpenBlob(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestBlobReader(t *testing.T) {
	s := openStore(t, DefaultConfig(t.TempDir()))
	data, m := storeBlob(t, s, 1, 300<<10)
	off := m.Offsets()

	t.Run("ReadAll", func(t *testing.T) {
		r := openBlob(t, s, m)
		// OneByteReader hides WriteTo, so this exercises Read.
		got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(r, 50<<10)))
		if err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(struct{ io.Reader }{r})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(got, rest...), data) {
			t.Fatal("Read returned different data")
		}
		if n, err := r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("Read at end = %d, %v; want 0, EOF", n, err)
		}
	})
	t.Run("WriteTo", func(t *testing.T) {
		r := openBlob(t, s, m)
		if _, err := r.Seek(off[3]+5, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		n, err := io.Copy(&buf, r)
		if err != nil || n != int64(len(data))-off[3]-5 || !bytes.Equal(buf.Bytes(), data[off[3]+5:]) {
			t.Fatalf("io.Copy = %d, %v; equal %v", n, err, bytes.Equal(buf.Bytes(), data[off[3]+5:]))
		}
	})
	t.Run("iotest", func(t *testing.T) {
		// Checks Read, ReadAt and Seek against the expected content.
		if err := iotest.TestReader(openBlob(t, s, m), data); err != nil {
			t.Fatal(err)
		}
	})
	readAts := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
	}{
		{"start", 0, 10, 10, nil},
		{"inside a chunk", off[2] + 7, 100, 100, nil},
		{"exactly one chunk", off[4], int(off[5] - off[4]), int(off[5] - off[4]), nil},
		{"across one boundary", off[5] - 3, 6, 6, nil},
		{"across several chunks", off[1] + 1, int(off[6] - off[1]), int(off[6] - off[1]), nil},
		{"last byte", int64(len(data)) - 1, 1, 1, nil},
		{"whole blob", 0, len(data), len(data), nil},
		{"past the end", int64(len(data)) - 5, 10, 5, io.EOF},
		{"at the end", int64(len(data)), 10, 0, io.EOF},
		{"beyond the end", int64(len(data)) + 100, 10, 0, io.EOF},
		{"empty read", off[3], 0, 0, nil},
	}
	for _, tt := range readAts {
		t.Run("ReadAt/"+tt.name, func(t *testing.T) {
			r := openBlob(t, s, m)
			p := make([]byte, tt.n)
			n, err := r.ReadAt(p, tt.off)
			if n != tt.wantN || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tt.n, tt.off, n, err, tt.wantN, tt.wantErr)
			}
			if n > 0 && !bytes.Equal(p[:n], data[tt.off:tt.off+int64(n)]) {
				t.Fatal("ReadAt returned different data")
			}
		})
	}
	t.Run("ReadAt/negative offset", func(t *testing.T) {
		if _, err := openBlob(t, s, m).ReadAt(make([]byte, 1), -1); err == nil {
			t.Fatal("ReadAt(-1) succeeded")
		}
	})
	t.Run("concurrent ReadAt", func(t *testing.T) {
		r := openBlob(t, s, m)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := g; i < len(m.Chunks)-1; i += 3 {
					at := off[i] + int64(g)
					p := make([]byte, off[i+1]-off[i])
					if _, err := r.ReadAt(p, at); err != nil {
						t.Errorf("ReadAt: %v", err)
						return
					}
					if !bytes.Equal(p, data[at:at+int64(len(p))]) {
						t.Error("ReadAt returned different data")
						return
					}
				}
			})
		}
		wg.Wait()
	})
	t.Run("Seek", func(t *testing.T) {
		r := openBlob(t, s, m)
		tests := []struct {
			offset  int64
			whence  int
			want    int64
			wantErr bool
		}{
			{off[2], io.SeekStart, off[2], false},
			{10, io.SeekCurrent, off[2] + 10, false},
			{-10, io.SeekEnd, int64(len(data)) - 10, false},
			{100, io.SeekEnd, int64(len(data)) + 100, false},
			{-1, io.SeekStart, 0, true},
			{0, 7, 0, true},
		}
		for _, tt := range tests {
			got, err := r.Seek(tt.offset, tt.whence)
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Errorf("Seek(%d, %d) = %d, %v; want %d, error %v", tt.offset, tt.whence, got, err, tt.want, tt.wantErr)
			}
		}
	})
	t.Run("Close", func(t *testing.T) {
		r := openBlob(t, s, m)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close = %v, want ErrClosed", err)
		}
		if _, err := r.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
			t.Errorf("ReadAt after Close = %v, want ErrClosed", err)
		}
	})
	if size := openBlob(t, s, m).Size(); size != int64(len(data)) {
		t.Errorf("Size = %d, want %d", size, len(data))
	}
}

func TestBlobReaderMissingOrCorruptChunk(t *testing.T) {
	const bad = 4
	tests := []struct {
		name    string
		damage  func(t *testing.T, s *Store, d chunker.Digest)
		wantErr error
	}{
		{"missing", func(t *testing.T, s *Store, d chunker.Digest) {
			if err := s.Delete(context.Background(), d); err != nil {
				t.Fatal(err)
			}
		}, ErrNotFound},
		{"corrupt", func(t *testing.T, s *Store, d chunker.Digest) {
			corruptions[0].apply(t, s.chunkPath(d))
		}, chunker.ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The damage is done behind the running store's back, which
			// only "always" re-hashes for.
			cfg := DefaultConfig(t.TempDir())
			cfg.VerifyOnRead = VerifyAlways
			s := openStore(t, cfg)
			data, m := storeBlob(t, s, 2, 200<<10)
			off := m.Offsets()
			d := m.Chunks[bad].Digest
			tt.damage(t, s, d)
			checkErr := func(what string, err, wantErr error) {
				t.Helper()
				if !errors.Is(err, wantErr) {
					t.Fatalf("%s = %v, want %v", what, err, wantErr)
				}
				for _, want := range []string{fmt.Sprintf("chunk %d ", bad), d.String(), fmt.Sprint(off[bad])} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s error %q does not mention %q", what, err, want)
					}
				}
			}

			got, err := io.ReadAll(openBlob(t, s, m))
			checkErr("ReadAll", err, tt.wantErr)
			if !bytes.Equal(got, data[:off[bad]]) {
				t.Errorf("ReadAll returned %d bytes before failing, want the %d before chunk %d", len(got), off[bad], bad)
			}
			r := openBlob(t, s, m)
			p := make([]byte, 100)
			n, err := r.ReadAt(p, off[bad]-50)
			// A corrupt chunk was dropped by the first read.
			checkErr("ReadAt", err, ErrNotFound)
			if n != 50 || !bytes.Equal(p[:n], data[off[bad]-50:off[bad]]) {
				t.Errorf("ReadAt returned %d bytes, want the 50 before chunk %d", n, bad)
			}
			// Other chunks still read.
			if _, err := r.ReadAt(p, off[bad+1]); err != nil {
				t.Errorf("ReadAt after the bad chunk: %v", err)
			}
		})
	}
}

func TestBlobReaderManifestMismatch(t *testing.T) {
	s := openStore(t, DefaultConfig(t.TempDir()))
	a, b := chunkData(1, 1000), chunkData(2, 1000)
	mustPut(t, s, a)
	mustPut(t, s, b)
	m := testManifest(t, a, b)
	m.Chunks[1].Size = 900 // the manifest lies about chunk 1's size
	m.Size = 1900
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(openBlob(t, s, m))
	if !errors.Is(err, chunker.ErrSizeMismatch) {
		t.Fatalf("ReadAll = %v, want ErrSizeMismatch", err)
	}
}

func TestOpenBlob(t *testing.T) {
	s := openStore(t, DefaultConfig(t.TempDir()))
	empty := &chunker.Manifest{Version: chunker.ManifestVersion, MinSize: 64, AvgSize: 1024, MaxSize: 4096, Digest: chunker.Sum(nil)}
	invalid := testManifest(t, chunkData(1, 100))
	invalid.Size++
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		m       *chunker.Manifest
		wantErr error
	}{
		{"nil", context.Background(), nil, chunker.ErrManifestInconsistent},
		{"invalid", context.Background(), invalid, chunker.ErrManifestInconsistent},
		{"cancelled", cancelled, empty, context.Canceled},
		{"empty blob", context.Background(), empty, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.OpenBlob(tt.ctx, tt.m)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("OpenBlob = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer r.Close()
			if n, err := r.Read(make([]byte, 10)); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("Read = %d, %v; want 0, EOF", n, err)
			}
			if n, err := r.ReadAt(make([]byte, 10), 0); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("ReadAt = %d, %v; want 0, EOF", n, err)
			}
		})
	}
}

func TestBlobReaderContext(t *testing.T) {
	s := openStore(t, DefaultConfig(t.TempDir()))
	_, m := storeBlob(t, s, 3, 100<<10)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := s.OpenBlob(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v, want context.Canceled", err)
	}
}
