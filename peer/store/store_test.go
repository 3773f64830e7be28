package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/fsutil"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"default", DefaultConfig("/var/lib/p2pd"), nil},
		{"with capacity", Config{Dir: "d", Capacity: 1 << 30}, nil},
		{"empty dir", Config{Capacity: 1}, ErrBadConfig},
		{"negative capacity", Config{Dir: "d", Capacity: -1}, ErrBadConfig},
		{"verify always", Config{Dir: "d", VerifyOnRead: VerifyAlways}, nil},
		{"unknown verify mode", Config{Dir: "d", VerifyOnRead: "sometimes"}, ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if _, err := Open(tt.cfg); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open() = %v, want %v", err, tt.wantErr)
				}
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	got := DefaultConfig("x")
	want := Config{Dir: "x", Capacity: 0, VerifyOnRead: VerifyFirstRead}
	if got != want {
		t.Fatalf("DefaultConfig = %+v, want %+v", got, want)
	}
	tags := map[string]string{"Dir": "dir", "Capacity": "capacity", "VerifyOnRead": "verify_on_read"}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if tag := f.Tag.Get("yaml"); tag != tags[f.Name] {
			t.Errorf("field %s: yaml tag %q, want %q", f.Name, tag, tags[f.Name])
		}
	}
}

func TestOpenLocksDirectory(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	s, err := Open(DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	data := chunkData(1, 100)
	d := mustPut(t, s, data)
	m := testManifest(t, data)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	ops := []struct {
		name string
		op   func() error
	}{
		{"Put", func() error { return s.Put(ctx, chunker.Sum(nil), nil) }},
		{"Get", func() error { _, err := s.Get(ctx, d); return err }},
		{"Delete", func() error { return s.Delete(ctx, d) }},
		{"Pin", func() error { return s.Pin(ctx, m) }},
		{"Unpin", func() error { return s.Unpin(ctx, d) }},
		{"PutManifest", func() error { _, err := s.PutManifest(ctx, m); return err }},
		{"Manifest", func() error { _, err := s.Manifest(ctx, d); return err }},
		{"Verify", func() error { _, err := s.Verify(ctx); return err }},
		{"OpenBlob", func() error { _, err := s.OpenBlob(ctx, m); return err }},
	}
	for _, tt := range ops {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, ErrClosed) {
				t.Fatalf("%s after Close = %v, want ErrClosed", tt.name, err)
			}
		})
	}
	if s.Has(d) {
		t.Error("Has after Close = true")
	}
}

func TestPutGet(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"4 KiB", 4 << 10},
		{"1 MiB plus 7", 1<<20 + 7},
		{"4 MiB", 4 << 20},
	}
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, DefaultConfig(t.TempDir()))
			data := chunkData(uint64(i), tt.size)
			d := chunker.Sum(data)
			if s.Has(d) {
				t.Fatal("Has before Put = true")
			}
			if err := s.Put(ctx, d, data); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if !s.Has(d) {
				t.Fatal("Has after Put = false")
			}
			got, err := s.Get(ctx, d)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("Get returned different data")
			}
			if s.Usage() != int64(tt.size) || s.Len() != 1 {
				t.Fatalf("Usage, Len = %d, %d, want %d, 1", s.Usage(), s.Len(), tt.size)
			}
			onDisk, err := os.ReadFile(filepath.Join(s.Dir(), "chunks", d.Hex()[:2], d.Hex()))
			if err != nil || !bytes.Equal(onDisk, data) {
				t.Fatalf("chunk file: err %v, equal %v", err, bytes.Equal(onDisk, data))
			}
			if tmp := listDir(t, filepath.Join(s.Dir(), tmpDir)); len(tmp) != 0 {
				t.Fatalf("tmp/ holds %v after Put", tmp)
			}
			// ReadChunk reuses a large enough buffer.
			buf := make([]byte, 0, tt.size+10)
			got, err = s.ReadChunk(ctx, d, buf)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadChunk: %v", err)
			}
			if tt.size > 0 && &got[0] != &buf[:1][0] {
				t.Error("ReadChunk did not reuse dst")
			}
		})
	}
}

func TestPutRejectsBeforeWriting(t *testing.T) {
	good := chunkData(1, 1000)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		digest  chunker.Digest
		data    []byte
		wantErr error
	}{
		{"too large", context.Background(), chunker.Digest{1}, make([]byte, chunker.MaxChunkSizeLimit+1), chunker.ErrChunkTooLarge},
		{"digest mismatch", context.Background(), chunker.Sum([]byte("other")), good, chunker.ErrDigestMismatch},
		{"one bit off", context.Background(), func() chunker.Digest { d := chunker.Sum(good); d[31] ^= 1; return d }(), good, chunker.ErrDigestMismatch},
		{"cancelled context", cancelled, chunker.Sum(good), good, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opened atomic.Int32
			s := openStore(t, DefaultConfig(t.TempDir()), withHooks(hooks{openTemp: func(p string) (*os.File, error) {
				opened.Add(1)
				return fsutil.OpenExclusive(p)
			}}))
			err := s.Put(tt.ctx, tt.digest, tt.data)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put = %v, want %v", err, tt.wantErr)
			}
			if n := opened.Load(); n != 0 {
				t.Errorf("Put created %d temp files before rejecting", n)
			}
			if s.Has(tt.digest) || s.Usage() != 0 || s.Len() != 0 {
				t.Errorf("after rejected Put: Has %v, Usage %d, Len %d", s.Has(tt.digest), s.Usage(), s.Len())
			}
			if files := chunkFiles(t, s.Dir()); len(files) != 0 {
				t.Errorf("chunk files after rejected Put: %v", files)
			}
		})
	}
}

func TestPutExistingIsNoop(t *testing.T) {
	var opened atomic.Int32
	s := openStore(t, DefaultConfig(t.TempDir()), withHooks(hooks{openTemp: func(p string) (*os.File, error) {
		opened.Add(1)
		return fsutil.OpenExclusive(p)
	}}))
	data := chunkData(1, 64<<10)
	d := mustPut(t, s, data)
	before, err := os.Stat(s.chunkPath(d))
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, data)
	after, err := os.Stat(s.chunkPath(d))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("second Put replaced the chunk file")
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("%d temp files created for two Puts of one chunk, want 1", n)
	}
	if s.Usage() != int64(len(data)) || s.Len() != 1 {
		t.Errorf("Usage, Len = %d, %d, want %d, 1", s.Usage(), s.Len(), len(data))
	}
}

func TestPutSameChunkConcurrently(t *testing.T) {
	tests := []struct {
		name       string
		firstFails bool
		wantWrites int32
	}{
		{"first write succeeds", false, 1},
		{"first write fails, a waiter retries", true, 2},
	}
	const n = 32
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opened, waiting atomic.Int32
			release := make(chan struct{})
			unblock := sync.OnceFunc(func() { close(release) })
			defer unblock() // also when the test fails early
			h := hooks{
				openTemp: func(p string) (*os.File, error) {
					if opened.Add(1) == 1 {
						<-release // hold the first write until everyone waits for it
						if tt.firstFails {
							return nil, &os.PathError{Op: "open", Path: p, Err: syscall.EIO}
						}
					}
					return fsutil.OpenExclusive(p)
				},
				waitFlight: func(chunker.Digest) { waiting.Add(1) },
			}
			s := openStore(t, DefaultConfig(t.TempDir()), withHooks(h))
			data := chunkData(7, 1<<20)
			d := chunker.Sum(data)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { errs[i] = s.Put(context.Background(), d, data) })
			}
			waitFor(t, 10*time.Second, "all Puts to wait for the first", func() bool { return waiting.Load() >= n-1 })
			unblock()
			wg.Wait()
			failed := 0
			for _, err := range errs {
				switch {
				case err == nil:
				case tt.firstFails && errors.Is(err, syscall.EIO):
					failed++
				default:
					t.Errorf("Put: %v", err)
				}
			}
			if want := map[bool]int{false: 0, true: 1}[tt.firstFails]; failed != want {
				t.Errorf("%d Puts failed, want %d", failed, want)
			}
			if got := opened.Load(); got != tt.wantWrites {
				t.Errorf("%d temp files created, want %d", got, tt.wantWrites)
			}
			if s.Usage() != int64(len(data)) || s.Len() != 1 {
				t.Errorf("Usage, Len = %d, %d, want %d, 1", s.Usage(), s.Len(), len(data))
			}
			if got, err := s.Get(context.Background(), d); err != nil || !bytes.Equal(got, data) {
				t.Errorf("Get: %v", err)
			}
			if tmp := listDir(t, filepath.Join(s.Dir(), tmpDir)); len(tmp) != 0 {
				t.Errorf("tmp/ holds %v", tmp)
			}
		})
	}
}

func TestPutWaiterHonoursContext(t *testing.T) {
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	defer unblock() // also when the test fails early
	var waiting atomic.Int32
	var first atomic.Bool
	s := openStore(t, DefaultConfig(t.TempDir()), withHooks(hooks{
		beforeRename: func(_, _ string) {
			if first.CompareAndSwap(false, true) {
				<-release
			}
		},
		waitFlight: func(chunker.Digest) { waiting.Add(1) },
	}))
	data := chunkData(3, 1000)
	d := chunker.Sum(data)
	firstErr := make(chan error, 1)
	go func() { firstErr <- s.Put(context.Background(), d, data) }()
	waitFor(t, 10*time.Second, "the first Put to start writing", first.Load)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiterErr := make(chan error, 1)
	go func() { waiterErr <- s.Put(ctx, d, data) }()
	waitFor(t, 10*time.Second, "the second Put to wait", func() bool { return waiting.Load() == 1 })
	cancel()
	if err := <-waiterErr; !errors.Is(err, context.Canceled) {
		t.Errorf("waiting Put after cancel = %v, want context.Canceled", err)
	}
	unblock()
	if err := <-firstErr; err != nil {
		t.Errorf("first Put = %v", err)
	}
	if !s.Has(d) {
		t.Error("chunk missing after the first Put finished")
	}
}

func TestChunkVisibleOnlyAfterRename(t *testing.T) {
	ctx := context.Background()
	data := chunkData(2, 256<<10)
	d := chunker.Sum(data)
	var s *Store
	called := false
	s = openStore(t, DefaultConfig(t.TempDir()), withHooks(hooks{beforeRename: func(tmp, final string) {
		called = true
		if s.Has(d) {
			t.Error("Has = true before rename")
		}
		if _, err := s.Get(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get before rename = %v, want ErrNotFound", err)
		}
		if s.Usage() != 0 {
			t.Errorf("Usage before rename = %d", s.Usage())
		}
		if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("final path before rename: %v, want not exist", err)
		}
		if b, err := os.ReadFile(tmp); err != nil || !bytes.Equal(b, data) {
			t.Errorf("temp file before rename: err %v, complete %v", err, bytes.Equal(b, data))
		}
		if filepath.Dir(tmp) != filepath.Join(s.Dir(), tmpDir) {
			t.Errorf("temp file %s is not in tmp/", tmp)
		}
	}}))
	mustPut(t, s, data)
	if !called {
		t.Fatal("beforeRename hook not called")
	}
	if !s.Has(d) {
		t.Error("Has after Put = false")
	}
}

func TestGetNotFound(t *testing.T) {
	s := openStore(t, DefaultConfig(t.TempDir()))
	mustPut(t, s, chunkData(1, 10))
	tests := []struct {
		name string
		d    chunker.Digest
	}{
		{"zero digest", chunker.Digest{}},
		{"empty chunk", chunker.Sum(nil)},
		{"other chunk", chunker.Sum(chunkData(2, 10))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Get(context.Background(), tt.d)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get = %v, want ErrNotFound", err)
			}
			if err := s.Delete(context.Background(), tt.d); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Delete = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, DefaultConfig(t.TempDir()))
	a, b := chunkData(1, 100), chunkData(2, 200)
	da, db := mustPut(t, s, a), mustPut(t, s, b)
	if err := s.Pin(ctx, testManifest(t, b)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, da); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if s.Has(da) || s.Usage() != 200 {
		t.Errorf("after Delete: Has %v, Usage %d", s.Has(da), s.Usage())
	}
	if _, err := os.Stat(s.chunkPath(da)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("chunk file after Delete: %v", err)
	}
	if err := s.Delete(ctx, db); !errors.Is(err, ErrPinned) {
		t.Errorf("Delete of pinned chunk = %v, want ErrPinned", err)
	}
}

// corruptions damage a chunk file in place. sameSize says whether the
// damage keeps the file's size, so that only hashing can find it.
var corruptions = []struct {
	name     string
	sameSize bool
	apply    func(t testing.TB, path string)
}{
	{"bit flip", true, func(t testing.TB, p string) {
		b := readFile(t, p)
		b[len(b)/2] ^= 0x10
		writeFile(t, p, b)
	}},
	{"other data of the same size", true, func(t testing.TB, p string) {
		writeFile(t, p, chunkData(99, len(readFile(t, p))))
	}},
	{"torn: truncated", false, func(t testing.TB, p string) {
		if err := os.Truncate(p, int64(len(readFile(t, p))/3)); err != nil {
			t.Fatal(err)
		}
	}},
	{"torn: empty", false, func(t testing.TB, p string) { writeFile(t, p, nil) }},
	{"garbage appended", false, func(t testing.TB, p string) {
		writeFile(t, p, append(readFile(t, p), "garbage"...))
	}},
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyOnRead damages a chunk file behind a running store's back.
// "always" catches it; "never" and "first-read" (which trusts what this
// store wrote) only notice a changed size. "first-read" catching damage
// done while the store was closed is TestOpenRebuildsIndexWithoutHashing.
func TestVerifyOnRead(t *testing.T) {
	ctx := context.Background()
	for _, c := range corruptions {
		for _, verify := range []VerifyMode{VerifyAlways, VerifyFirstRead, VerifyNever} {
			t.Run(fmt.Sprintf("%s/verify=%s", c.name, verify), func(t *testing.T) {
				cfg := DefaultConfig(t.TempDir())
				cfg.VerifyOnRead = verify
				s := openStore(t, cfg)
				good := mustPut(t, s, chunkData(1, 10000))
				data := chunkData(2, 20000)
				d := mustPut(t, s, data)
				c.apply(t, s.chunkPath(d))

				got, err := s.Get(ctx, d)
				if verify == VerifyAlways || !c.sameSize {
					if !errors.Is(err, chunker.ErrDigestMismatch) {
						t.Fatalf("Get of corrupt chunk = %v, want ErrDigestMismatch", err)
					}
					if s.Has(d) || s.Usage() != 10000 || s.Len() != 1 {
						t.Errorf("corrupt chunk not dropped: Has %v, Usage %d, Len %d", s.Has(d), s.Usage(), s.Len())
					}
					if _, err := os.Stat(s.chunkPath(d)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("corrupt chunk file still there: %v", err)
					}
					if _, err := s.Get(ctx, d); !errors.Is(err, ErrNotFound) {
						t.Errorf("second Get = %v, want ErrNotFound", err)
					}
					// It can be stored again.
					mustPut(t, s, data)
					if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, data) {
						t.Errorf("Get after re-Put: %v", err)
					}
				} else {
					if err != nil || bytes.Equal(got, data) {
						t.Fatalf("Get without verification = %v, changed data %v; want the corrupt data served", err, !bytes.Equal(got, data))
					}
				}
				if _, err := s.Get(ctx, good); err != nil {
					t.Errorf("Get of intact chunk: %v", err)
				}
			})
		}
	}
}

func TestOpenRebuildsIndexWithoutHashing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, DefaultConfig(dir))
	var ds []chunker.Digest
	var total int64
	for i := range 20 {
		data := chunkData(uint64(i), 1000+i*100)
		ds = append(ds, mustPut(t, s, data))
		total += int64(len(data))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A corrupt file of the right size is only found by hashing.
	corruptions[0].apply(t, s.chunkPath(ds[3]))

	s2 := openStore(t, DefaultConfig(dir))
	if s2.Len() != len(ds) || s2.Usage() != total {
		t.Fatalf("after reopen: Len %d, Usage %d, want %d, %d", s2.Len(), s2.Usage(), len(ds), total)
	}
	for _, d := range ds {
		if !s2.Has(d) {
			t.Errorf("Has(%s) = false after reopen", d)
		}
	}
	if _, err := s2.Get(ctx, ds[3]); !errors.Is(err, chunker.ErrDigestMismatch) {
		t.Fatalf("Get of chunk corrupted while closed = %v, want ErrDigestMismatch", err)
	}
	for i, d := range ds {
		if i == 3 {
			continue
		}
		if _, err := s2.Get(ctx, d); err != nil {
			t.Errorf("Get(%s): %v", d, err)
		}
	}
}

func TestOpenCleansUp(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, DefaultConfig(dir))
	a := mustPut(t, s, chunkData(1, 3000))
	b := mustPut(t, s, chunkData(2, 5000))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What a crash can leave, and files that are not the store's.
	bogus := chunker.Sum([]byte("never stored"))
	planted := map[string][]byte{
		filepath.Join(dir, tmpDir, a.Hex()+".17.tmp"):                chunkData(1, 1000),
		filepath.Join(dir, tmpDir, "manifest.3.tmp"):                 []byte("x"),
		filepath.Join(dir, chunksDir, b.Hex()[:2], b.Hex()+".9.tmp"): chunkData(3, 100),
		filepath.Join(dir, chunksDir, bogus.Hex()[:2], bogus.Hex()):  nil, // empty, not the empty chunk
		filepath.Join(dir, chunksDir, "00", "README"):                []byte("foreign"),
		filepath.Join(dir, chunksDir, "README"):                      []byte("foreign"),
		filepath.Join(dir, chunksDir, "zz", a.Hex()):                 chunkData(1, 3000), // not a shard
		filepath.Join(dir, "backup.tar"):                             make([]byte, 1<<20),
		filepath.Join(dir, chunksDir, "ff", a.Hex()):                 chunkData(1, 3000), // wrong shard
		filepath.Join(dir, manifestsDir, "notes.txt"):                []byte("foreign"),
		filepath.Join(dir, chunksDir, b.Hex()[:2], b.Hex()[:63]+"g"): []byte("bad name"),
	}
	for p, data := range planted {
		writeFile(t, p, data)
	}
	s2 := openStore(t, DefaultConfig(dir))
	if tmp := listDir(t, filepath.Join(dir, tmpDir)); len(tmp) != 0 {
		t.Errorf("tmp/ after Open: %v", tmp)
	}
	for _, p := range []string{
		filepath.Join(dir, chunksDir, b.Hex()[:2], b.Hex()+".9.tmp"),
		filepath.Join(dir, chunksDir, bogus.Hex()[:2], bogus.Hex()),
	} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
	for _, p := range []string{filepath.Join(dir, "backup.tar"), filepath.Join(dir, chunksDir, "00", "README")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("foreign file %s: %v", p, err)
		}
	}
	if s2.Len() != 2 || s2.Usage() != 8000 || s2.Has(bogus) {
		t.Errorf("Len %d, Usage %d, Has(bogus) %v; want 2, 8000, false", s2.Len(), s2.Usage(), s2.Has(bogus))
	}
	if got := s2.Manifests(); len(got) != 0 {
		t.Errorf("Manifests = %v, want none", got)
	}
}

// lruOps runs a script of "put X", "get X", "has X" against s; the chunk
// named X is 1000 bytes derived from X.
func lruOps(t *testing.T, s *Store, ops []string) error {
	t.Helper()
	ctx := context.Background()
	for _, op := range ops {
		var verb, name string
		if _, err := fmt.Sscan(op, &verb, &name); err != nil {
			t.Fatalf("bad op %q", op)
		}
		data := lruChunk(name)
		var err error
		switch verb {
		case "put":
			err = s.Put(ctx, chunker.Sum(data), data)
		case "get":
			_, err = s.Get(ctx, chunker.Sum(data))
		case "has":
			s.Has(chunker.Sum(data))
		default:
			t.Fatalf("bad op %q", op)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

func lruChunk(name string) []byte {
	size := 1000
	if len(name) > 1 { // "BIG" etc.
		size = 1500
	}
	return chunkData(uint64(name[0])<<8|uint64(len(name)), size)
}

func checkPresent(t *testing.T, s *Store, present, absent string) {
	t.Helper()
	for _, n := range present {
		if !s.Has(chunker.Sum(lruChunk(string(n)))) {
			t.Errorf("chunk %c was evicted", n)
		}
	}
	for _, n := range absent {
		if s.Has(chunker.Sum(lruChunk(string(n)))) {
			t.Errorf("chunk %c was not evicted", n)
		}
		if _, err := os.Stat(s.chunkPath(chunker.Sum(lruChunk(string(n))))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("chunk %c: file still there: %v", n, err)
		}
	}
}

func TestLRUEviction(t *testing.T) {
	tests := []struct {
		name            string
		ops             []string
		present, absent string
	}{
		{"oldest goes first", []string{"put A", "put B", "put C", "put D"}, "BCD", "A"},
		{"get refreshes", []string{"put A", "put B", "put C", "get A", "put D"}, "ACD", "B"},
		{"put of a stored chunk refreshes", []string{"put A", "put B", "put C", "put A", "put D"}, "ACD", "B"},
		{"has does not refresh", []string{"put A", "put B", "put C", "has A", "put D"}, "BCD", "A"},
		{"two evictions", []string{"put A", "put B", "put C", "put D", "get B", "put E"}, "BDE", "AC"},
		{"a big chunk evicts several", []string{"put A", "put B", "put C", "get A", "put BIG"}, "A", "BC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			cfg.Capacity = 3000
			s := openStore(t, cfg)
			if err := lruOps(t, s, tt.ops); err != nil {
				t.Fatal(err)
			}
			checkPresent(t, s, tt.present, tt.absent)
			if s.Usage() > cfg.Capacity {
				t.Errorf("Usage %d over capacity %d", s.Usage(), cfg.Capacity)
			}
		})
	}
}

func TestLRUOrderSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig(dir)
	cfg.Capacity = 3000
	s := openStore(t, cfg)
	if err := lruOps(t, s, []string{"put A", "put B", "put C"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, age := range map[string]time.Duration{"A": time.Hour, "B": 3 * time.Hour, "C": 2 * time.Hour} {
		p := s.chunkPath(chunker.Sum(lruChunk(name)))
		if err := os.Chtimes(p, time.Time{}, now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	s2 := openStore(t, cfg)
	if err := lruOps(t, s2, []string{"put D"}); err != nil {
		t.Fatal(err)
	}
	checkPresent(t, s2, "ACD", "B")
	if err := lruOps(t, s2, []string{"put E"}); err != nil {
		t.Fatal(err)
	}
	checkPresent(t, s2, "ADE", "BC")
}

func TestGetRefreshesMtime(t *testing.T) {
	tests := []struct {
		name      string
		interval  time.Duration
		wantTouch bool
	}{
		{"stale mtime is refreshed", 0, true},
		{"recent enough mtime is kept", time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, DefaultConfig(dir), withTouchInterval(tt.interval))
			d := mustPut(t, s, chunkData(1, 100))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
			if err := os.Chtimes(s.chunkPath(d), time.Time{}, old); err != nil {
				t.Fatal(err)
			}
			s2 := openStore(t, DefaultConfig(dir), withTouchInterval(tt.interval))
			if _, err := s2.Get(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(s2.chunkPath(d))
			if err != nil {
				t.Fatal(err)
			}
			if touched := fi.ModTime().After(old); touched != tt.wantTouch {
				t.Errorf("mtime %v after Get (was %v): touched %v, want %v", fi.ModTime(), old, touched, tt.wantTouch)
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   []string // ops before the Put under test
		pin     string   // chunks to pin before it
		put     string
		wantErr error
		present string
	}{
		{"chunk larger than capacity", []string{"put A"}, "", "HUGE", ErrCapacity, "A"},
		{"everything pinned", []string{"put A", "put B", "put C"}, "ABC", "D", ErrCapacity, "ABC"},
		{"not enough unpinned", []string{"put A", "put B", "put C"}, "BC", "BIG", ErrCapacity, "ABC"},
		{"pinned chunks are skipped", []string{"put A", "put B", "put C"}, "AB", "D", nil, "ABD"},
		{"pin of chunks not stored yet", nil, "AB", "C", nil, "C"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			cfg.Capacity = 3000
			s := openStore(t, cfg)
			if tt.pin != "" {
				var chunks [][]byte
				for _, n := range tt.pin {
					chunks = append(chunks, lruChunk(string(n)))
				}
				if err := s.Pin(ctx, testManifest(t, chunks...)); err != nil {
					t.Fatal(err)
				}
			}
			if err := lruOps(t, s, tt.setup); err != nil {
				t.Fatal(err)
			}
			usage := s.Usage()
			data := lruChunk(tt.put)
			if tt.put == "HUGE" {
				data = chunkData(5, 3001)
			}
			err := s.Put(ctx, chunker.Sum(data), data)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Put = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if errors.Is(err, ErrNoSpace) {
					t.Error("capacity error also matches ErrNoSpace")
				}
				if s.Usage() != usage {
					t.Errorf("failed Put changed Usage from %d to %d (evicted for nothing)", usage, s.Usage())
				}
			}
			checkPresent(t, s, tt.present, "")
		})
	}
}

func TestPinUnpin(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig(t.TempDir())
	cfg.Capacity = 3000
	s := openStore(t, cfg)
	m1 := testManifest(t, lruChunk("A"), lruChunk("B"))
	m2 := testManifest(t, lruChunk("B"), lruChunk("C"))
	for _, m := range []*chunker.Manifest{m1, m2, m1} { // pinning twice is a no-op
		if err := s.Pin(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := lruOps(t, s, []string{"put A", "put B", "put C"}); err != nil {
		t.Fatal(err)
	}
	if err := lruOps(t, s, []string{"put D"}); !errors.Is(err, ErrCapacity) {
		t.Fatalf("Put with everything pinned = %v, want ErrCapacity", err)
	}
	if err := s.Unpin(ctx, manifestID(t, m1)); err != nil {
		t.Fatal(err)
	}
	// B is still pinned by m2; A is now evictable.
	if err := lruOps(t, s, []string{"put D"}); err != nil {
		t.Fatal(err)
	}
	checkPresent(t, s, "BCD", "A")
	// Only D is evictable.
	if err := lruOps(t, s, []string{"put E"}); err != nil {
		t.Fatal(err)
	}
	checkPresent(t, s, "BCE", "AD")
	if err := s.Unpin(ctx, manifestID(t, m2)); err != nil {
		t.Fatal(err)
	}
	// Unpinned chunks count as just used: E is now the oldest.
	if err := lruOps(t, s, []string{"put F"}); err != nil {
		t.Fatal(err)
	}
	checkPresent(t, s, "BCF", "ADE")
}

func TestPinErrors(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, DefaultConfig(t.TempDir()))
	data := chunkData(1, 100)
	d := mustPut(t, s, data)
	pinned := testManifest(t, data)
	unpinned := testManifest(t, data, data)
	if err := s.Pin(ctx, pinned); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutManifest(ctx, unpinned); err != nil {
		t.Fatal(err)
	}
	invalid := *pinned
	invalid.Size++
	tests := []struct {
		name    string
		op      func() error
		wantErr error
	}{
		{"pin nil", func() error { return s.Pin(ctx, nil) }, chunker.ErrManifestInconsistent},
		{"pin invalid", func() error { return s.Pin(ctx, &invalid) }, chunker.ErrManifestInconsistent},
		{"put invalid manifest", func() error { _, err := s.PutManifest(ctx, &invalid); return err }, chunker.ErrManifestInconsistent},
		{"unpin unknown", func() error { return s.Unpin(ctx, chunker.Digest{9}) }, ErrNotFound},
		{"unpin unpinned", func() error { return s.Unpin(ctx, manifestID(t, unpinned)) }, ErrNotFound},
		{"manifest unknown", func() error { _, err := s.Manifest(ctx, chunker.Digest{9}); return err }, ErrNotFound},
		{"delete pinned manifest", func() error { return s.DeleteManifest(ctx, manifestID(t, pinned)) }, ErrPinned},
		{"delete unknown manifest", func() error { return s.DeleteManifest(ctx, chunker.Digest{9}) }, ErrNotFound},
		{"delete pinned chunk", func() error { return s.Delete(ctx, d) }, ErrPinned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestManifestsPersist(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := DefaultConfig(dir)
	cfg.Capacity = 3000
	s := openStore(t, cfg)
	mPinned := testManifest(t, lruChunk("A"), lruChunk("B"))
	mStored := testManifest(t, lruChunk("C"))
	mDeleted := testManifest(t, lruChunk("D"))
	if err := s.Pin(ctx, mPinned); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*chunker.Manifest{mStored, mDeleted} {
		if _, err := s.PutManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteManifest(ctx, manifestID(t, mDeleted)); err != nil {
		t.Fatal(err)
	}
	if err := lruOps(t, s, []string{"put A", "put B", "put C"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, cfg)
	want := []ManifestInfo{{manifestID(t, mPinned), true}, {manifestID(t, mStored), false}}
	slices.SortFunc(want, func(a, b ManifestInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	if got := s2.Manifests(); !slices.Equal(got, want) {
		t.Fatalf("Manifests after reopen = %v, want %v", got, want)
	}
	for _, m := range []*chunker.Manifest{mPinned, mStored} {
		got, err := s2.Manifest(ctx, manifestID(t, m))
		if err != nil || !got.Equal(m) {
			t.Fatalf("Manifest(%s) = %v, %v", manifestID(t, m), got, err)
		}
	}
	if _, err := s2.Manifest(ctx, manifestID(t, mDeleted)); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted manifest after reopen: %v, want ErrNotFound", err)
	}
	// The pin still protects A and B, although A is the oldest chunk.
	if err := lruOps(t, s2, []string{"put D"}); err != nil {
		t.Fatal(err)
	}
	checkPresent(t, s2, "ABD", "C")
	if err := s2.Unpin(ctx, manifestID(t, mPinned)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	s3 := openStore(t, cfg)
	for _, mi := range s3.Manifests() {
		if mi.Pinned {
			t.Errorf("manifest %s still pinned after Unpin and reopen", mi.ID)
		}
	}
	if err := lruOps(t, s3, []string{"put E"}); err != nil {
		t.Fatalf("Put after unpin and reopen: %v", err)
	}
}

func TestCorruptManifestFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := DefaultConfig(dir)
	cfg.Capacity = 2000
	s := openStore(t, cfg)
	m := testManifest(t, lruChunk("A"), lruChunk("B"))
	id := manifestID(t, m)
	if err := s.Pin(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := lruOps(t, s, []string{"put A", "put B"}); err != nil {
		t.Fatal(err)
	}
	corruptions[0].apply(t, s.manifestPath(id))
	if _, err := s.Manifest(ctx, id); !errors.Is(err, chunker.ErrDigestMismatch) {
		t.Fatalf("Manifest of corrupt file = %v, want ErrDigestMismatch", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A pin whose manifest is unreadable cannot protect anything: Open
	// drops it rather than failing.
	s2 := openStore(t, cfg)
	if got := s2.Manifests(); len(got) != 1 || got[0].Pinned {
		t.Fatalf("Manifests = %v, want one unpinned", got)
	}
	if err := lruOps(t, s2, []string{"put C"}); err != nil {
		t.Fatalf("Put after dropping the broken pin: %v", err)
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, DefaultConfig(dir))
			var total int64
			var ds []chunker.Digest
			for i := range 10 {
				data := chunkData(uint64(i), 5000+i)
				ds = append(ds, mustPut(t, s, data))
				total += int64(len(data))
			}
			// A planted file that was never Put: a name with the wrong data.
			planted := chunker.Sum([]byte("planted"))
			writeFile(t, s.chunkPath(planted), chunkData(42, 3000))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			c.apply(t, s.chunkPath(ds[4]))
			corruptSize := int64(len(readFile(t, s.chunkPath(ds[4]))))
			missing := ds[7]
			s2 := openStore(t, DefaultConfig(dir))
			wantDropped := []chunker.Digest{ds[4], planted}
			wantChecked, wantDroppedBytes := 10, 3000+corruptSize
			if corruptSize == 0 {
				// Open drops an empty file without reading it.
				wantDropped, wantChecked = wantDropped[1:], 9
			}
			if !s2.Has(planted) || s2.Has(ds[4]) != (corruptSize > 0) {
				t.Fatal("Open hashed chunks (or skipped files)")
			}
			if err := os.Remove(s2.chunkPath(missing)); err != nil {
				t.Fatal(err)
			}
			rep, err := s2.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(wantDropped, func(a, b chunker.Digest) int { return bytes.Compare(a[:], b[:]) })
			wantCheckedBytes := total - 5007 - 5004 + wantDroppedBytes
			if rep.Checked != wantChecked || rep.CheckedBytes != wantCheckedBytes ||
				rep.Dropped != len(wantDropped) || rep.DroppedBytes != wantDroppedBytes || rep.Missing != 1 ||
				!slices.Equal(rep.DroppedDigests, wantDropped) {
				t.Errorf("Verify report = %+v, want %d checked (%d bytes), dropped %v (%d bytes), 1 missing",
					rep, wantChecked, wantCheckedBytes, wantDropped, wantDroppedBytes)
			}
			for _, d := range append(wantDropped, missing) {
				if s2.Has(d) {
					t.Errorf("%s still indexed after Verify", d)
				}
				if _, err := os.Stat(s2.chunkPath(d)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: file still there: %v", d, err)
				}
			}
			if want := total - 5004 - 5007; s2.Usage() != want || s2.Len() != 8 {
				t.Errorf("Usage, Len = %d, %d, want %d, 8", s2.Usage(), s2.Len(), want)
			}
			rep, err = s2.Verify(ctx)
			if err != nil || rep.Dropped != 0 || rep.Missing != 0 || rep.Checked != 8 {
				t.Errorf("second Verify = %+v, %v; want 8 checked, nothing dropped", rep, err)
			}
		})
	}
}

func TestVerifyCancelled(t *testing.T) {
	s := openStore(t, DefaultConfig(t.TempDir()))
	mustPut(t, s, chunkData(1, 100))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Verify(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify = %v, want context.Canceled", err)
	}
}

// TestConcurrentUse runs writers, readers, deleters, Verify and eviction
// at once; run it with -race.
func TestConcurrentUse(t *testing.T) {
	const (
		writers   = 4
		perWriter = 60
		size      = 16 << 10
	)
	ctx := context.Background()
	cfg := DefaultConfig(t.TempDir())
	cfg.Capacity = 10 * size
	s := openStore(t, cfg)

	// Writers share half their chunks, so the same chunk is often put
	// concurrently.
	data := make([][]byte, writers*perWriter)
	for i := range data {
		data[i] = chunkData(uint64(i), size)
	}
	pinnedData := [][]byte{chunkData(1000, size), chunkData(1001, size)}
	m := testManifest(t, pinnedData...)
	if err := s.Pin(ctx, m); err != nil {
		t.Fatal(err)
	}
	for _, b := range pinnedData {
		mustPut(t, s, b)
	}

	var wg sync.WaitGroup
	var writersDone atomic.Int32
	var reads, hits atomic.Int64
	for w := range writers {
		wg.Go(func() {
			defer writersDone.Add(1)
			for i := range perWriter {
				b := data[(w*perWriter/2+i)%len(data)]
				if err := s.Put(ctx, chunker.Sum(b), b); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
	}
	for r := range 4 {
		wg.Go(func() {
			for i := r; writersDone.Load() < writers; i += 7 {
				b := data[i%len(data)]
				got, err := s.Get(ctx, chunker.Sum(b))
				reads.Add(1)
				switch {
				case err == nil:
					hits.Add(1)
					if !bytes.Equal(got, b) {
						t.Error("Get returned wrong data")
						return
					}
				case !errors.Is(err, ErrNotFound):
					t.Errorf("Get: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for writersDone.Load() < writers {
			b := data[int(reads.Load())%len(data)]
			if err := s.Delete(ctx, chunker.Sum(b)); err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("Delete: %v", err)
				return
			}
			if rep, err := s.Verify(ctx); err != nil || rep.Dropped != 0 {
				t.Errorf("Verify = %+v, %v", rep, err)
				return
			}
		}
	})
	wg.Wait()
	t.Logf("%d reads, %d hits", reads.Load(), hits.Load())

	if s.Usage() > cfg.Capacity {
		t.Errorf("Usage %d over capacity %d", s.Usage(), cfg.Capacity)
	}
	for _, b := range pinnedData {
		if !s.Has(chunker.Sum(b)) {
			t.Error("pinned chunk was evicted")
		}
	}
	// The index matches the disk exactly.
	files := chunkFiles(t, s.Dir())
	var onDisk int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
	}
	if len(files) != s.Len() || onDisk != s.Usage() {
		t.Errorf("disk has %d files, %d bytes; index has %d, %d", len(files), onDisk, s.Len(), s.Usage())
	}
	if tmp := listDir(t, filepath.Join(s.Dir(), tmpDir)); len(tmp) != 0 {
		t.Errorf("tmp/ holds %v", tmp)
	}
}

func TestOpenEvictsToCapacity(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, DefaultConfig(dir))
	if err := lruOps(t, s, []string{"put A", "put B", "put C", "put D"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pin(context.Background(), testManifest(t, lruChunk("A"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, age := range map[string]time.Duration{"A": 4 * time.Hour, "B": 3 * time.Hour, "C": time.Hour, "D": 2 * time.Hour} {
		if err := os.Chtimes(s.chunkPath(chunker.Sum(lruChunk(name))), time.Time{}, now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	// The capacity shrank while the store was closed: Open evicts the
	// least recently used unpinned chunks to fit.
	cfg := DefaultConfig(dir)
	cfg.Capacity = 2000
	s2 := openStore(t, cfg)
	checkPresent(t, s2, "AC", "BD")
	if s2.Usage() != 2000 {
		t.Errorf("Usage = %d, want 2000", s2.Usage())
	}
}

// TestOpenChunk: OpenChunk hands out the file of a chunk this run wrote or
// checked, holding exactly the chunk; one that VerifyOnRead wants hashed
// first is ErrMustVerify, until a ReadChunk has checked it; a file of the
// wrong size is dropped.
func TestOpenChunk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, DefaultConfig(dir))
	data := chunkData(7, 30000)
	d := mustPut(t, s, data)
	readAll := func(s *Store, d chunker.Digest) ([]byte, error) {
		t.Helper()
		f, size, err := s.OpenChunk(ctx, d)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err == nil && int64(len(b)) != size {
			t.Errorf("OpenChunk: size %d, file %d bytes", size, len(b))
		}
		return b, err
	}
	if got, err := readAll(s, d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("OpenChunk of a chunk written this run: %v", err)
	}
	if _, err := readAll(s, chunker.Sum([]byte("nope"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenChunk of a missing chunk: %v", err)
	}
	// An open file survives the chunk's deletion.
	f, _, err := s.OpenChunk(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, data) {
		t.Errorf("reading an open chunk file after Delete: %v", err)
	}
	f.Close()
	mustPut(t, s, data)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for _, verify := range []VerifyMode{VerifyFirstRead, VerifyAlways, VerifyNever} {
		cfg := DefaultConfig(dir)
		cfg.VerifyOnRead = verify
		s := openStore(t, cfg)
		_, err := readAll(s, d)
		if verify == VerifyNever {
			if err != nil {
				t.Errorf("verify=%s: OpenChunk after reopen: %v", verify, err)
			}
		} else if !errors.Is(err, ErrMustVerify) {
			t.Errorf("verify=%s: OpenChunk after reopen = %v, want ErrMustVerify", verify, err)
		}
		if _, err := s.Get(ctx, d); err != nil {
			t.Fatal(err)
		}
		_, err = readAll(s, d)
		if wantErr := verify == VerifyAlways; wantErr != errors.Is(err, ErrMustVerify) || !wantErr && err != nil {
			t.Errorf("verify=%s: OpenChunk after a checked read = %v", verify, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	s = openStore(t, Config{Dir: dir, VerifyOnRead: VerifyNever})
	if err := os.WriteFile(s.chunkPath(d), data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(s, d); !errors.Is(err, chunker.ErrDigestMismatch) || s.Has(d) {
		t.Errorf("OpenChunk of a truncated file = %v, Has %v; want ErrDigestMismatch and the chunk dropped", err, s.Has(d))
	}
}
