// Package transferbench measures the peer data plane: one engine pulls a
// generated blob from another over loopback, through the real stack
// (libp2p TCP + TLS 1.3 + yamux, the chunk protocol, SHA-256 verification
// of every chunk, fsynced writes into a real store, and the final check of
// the whole blob), and the same run measures a bare libp2p stream on the
// same transport stack, as the ceiling the data plane is compared with.
// `p2pctl bench transfer` prints its Result.
package transferbench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/procstat"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// DefaultSize is the blob size when Options.Size is 0.
const DefaultSize = 256 << 20

// Options configure a run. The zero value is usable.
type Options struct {
	// Size is the blob's size in bytes (default 256 MiB).
	Size int64
	// Seed selects the generated blob (chunkertest.NewStream).
	Seed uint64
	// Chunker sets the chunk sizes (default: the chunker's defaults).
	Chunker chunker.Config
	// Dir is where the two stores' temporary directories go (default
	// DefaultDir()). Both are removed at the end. Its file system matters:
	// every chunk is fsynced, so on a disk slower than the network the
	// disk is what is measured (see Result.DiskSyncMBps).
	Dir string
	// Engine adjusts both engines' configuration (listen addresses are
	// loopback whatever it says).
	Engine peer.Config
	// Logger receives the engines' logs (default: discarded).
	Logger *slog.Logger
	// SkipRaw skips the raw stream measurement.
	SkipRaw bool
	// CPUProfile, if set, receives a CPU profile of the pull alone.
	CPUProfile io.Writer
}

// Result is what a run measured.
type Result struct {
	Size   int64 `json:"size"`
	Chunks int   `json:"chunks"`
	// SetupSeconds is the time to chunk the generated blob into the
	// seeder's store (not part of the transfer).
	SetupSeconds float64 `json:"setup_seconds"`
	// TransferSeconds is the time of the Pull, from the call to its
	// return: manifest lookup, every chunk fetched, verified and stored,
	// the blob read back and checked, the manifest pinned.
	TransferSeconds float64 `json:"transfer_seconds"`
	TransferMBps    float64 `json:"transfer_mbps"`
	// TransferCPUSeconds is the CPU time of the whole process (both
	// engines) during the Pull.
	TransferCPUSeconds float64 `json:"transfer_cpu_seconds"`
	// PeakRSSBytes is the process's peak resident memory during the Pull
	// (both engines), where the kernel lets the peak be reset; otherwise
	// the peak since the process started.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// RawStreamSeconds and RawStreamMBps: Size bytes written and read on
	// one libp2p stream between two hosts built like the engines' hosts.
	RawStreamSeconds float64 `json:"raw_stream_seconds"`
	RawStreamMBps    float64 `json:"raw_stream_mbps"`
	// RawStreamCPUSeconds is the process's CPU time during the raw stream;
	// compared with TransferCPUSeconds it gives the data plane's cost per
	// byte over the bare stream, whatever else the machine is doing.
	RawStreamCPUSeconds float64 `json:"raw_stream_cpu_seconds"`
	// Ratio is TransferMBps / RawStreamMBps.
	Ratio float64 `json:"ratio"`
	// DiskSyncMBps is how fast Size bytes were written and fsynced to one
	// file in Dir, in the same run: the store's ceiling on that file
	// system. CeilingRatio is TransferMBps over the lower of it and
	// RawStreamMBps.
	DiskSyncMBps float64 `json:"disk_sync_mbps"`
	CeilingRatio float64 `json:"ceiling_ratio"`
	// Dir is the directory the stores were in, and FS its file system
	// ("tmpfs", "ext4", ...).
	Dir   string `json:"dir"`
	FS    string `json:"fs"`
	Procs int    `json:"procs"`
}

// DefaultDir is where stores go by default: /dev/shm when it is a tmpfs,
// so that the run measures the data plane (network, TLS, hashing, the
// store's code) the way the raw stream it is compared with is measured,
// in memory; otherwise the system's temp directory.
func DefaultDir() string {
	if fsType("/dev/shm") == "tmpfs" {
		return "/dev/shm"
	}
	return os.TempDir()
}

// Run performs one measurement.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	parent := o.Dir
	if parent == "" {
		parent = DefaultDir()
	}
	tmp, err := os.MkdirTemp(parent, "p2pd-bench-")
	if err != nil {
		return Result{}, fmt.Errorf("transferbench: %w", err)
	}
	defer os.RemoveAll(tmp)
	res := Result{Size: o.Size, Dir: parent, FS: fsType(parent), Procs: runtime.GOMAXPROCS(0)}
	if err := transfer(ctx, o, tmp, &res); err != nil {
		return res, err
	}
	if o.SkipRaw {
		return res, nil
	}
	if err := rawStream(ctx, o, &res); err != nil {
		return res, err
	}
	if err := diskSync(ctx, o, tmp, &res); err != nil {
		return res, err
	}
	res.Ratio = res.TransferMBps / res.RawStreamMBps
	res.CeilingRatio = res.TransferMBps / min(res.RawStreamMBps, res.DiskSyncMBps)
	return res, nil
}

// diskSync times writing Size bytes to a file in dir and fsyncing it.
func diskSync(ctx context.Context, o Options, dir string, res *Result) error {
	f, err := os.CreateTemp(dir, "disk-")
	if err != nil {
		return fmt.Errorf("transferbench: disk: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1<<20)
	gen := chunkertest.NewStream(o.Seed, o.Size)
	start := time.Now()
	for left := o.Size; left > 0; left -= int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(int64(len(buf)), left)]
		gen.Read(b)
		if _, err := f.Write(b); err != nil {
			return fmt.Errorf("transferbench: disk: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("transferbench: disk: %w", err)
	}
	res.DiskSyncMBps = float64(o.Size) / time.Since(start).Seconds() / 1e6
	return nil
}

// fsType names the file system dir is on, or "unknown".
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch uint64(st.Type) {
	case 0x01021994:
		return "tmpfs"
	case 0xef53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683e:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("0x%x", uint64(st.Type))
}

// node is an engine with its store.
type node struct {
	st *store.Store
	e  *peer.Engine
}

func startNode(ctx context.Context, o Options, dir string, role trackerwire.Role, tr peer.Tracker, name string) (*node, error) {
	st, err := store.Open(store.DefaultConfig(dir))
	if err != nil {
		return nil, err
	}
	cfg := o.Engine
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Role = role
	e, err := peer.New(cfg, peer.Deps{Store: st, Tracker: tr, Logger: o.Logger.With("node", name)})
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := e.Start(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return &node{st: st, e: e}, nil
}

func (n *node) close() error {
	return errors.Join(closeNode(n.e), n.st.Close())
}

// startTracker runs a real tracker on a loopback port and returns a
// client for it.
func startTracker(ctx context.Context, o Options) (*daemon.Node, *trackerclient.Client, error) {
	n, err := daemon.RunTracker(ctx, daemon.TrackerConfig{Listen: "127.0.0.1:0"}, o.Logger)
	if err != nil {
		return nil, nil, fmt.Errorf("transferbench: tracker: %w", err)
	}
	c, err := trackerclient.New(n.URL("http"))
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("transferbench: tracker client: %w", err), closeNode(n))
	}
	return n, c, nil
}

func closeNode(n interface{ Close(context.Context) error }) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Close(ctx)
}

func transfer(ctx context.Context, o Options, tmp string, res *Result) (err error) {
	trn, tr, err := startTracker(ctx, o)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeNode(trn)) }()
	seeder, err := startNode(ctx, o, filepath.Join(tmp, "seeder"), trackerwire.RoleOrigin, tr, "seeder")
	if err != nil {
		return fmt.Errorf("transferbench: seeder: %w", err)
	}
	defer func() { err = errors.Join(err, seeder.close()) }()

	start := time.Now()
	c, err := chunker.New(o.Chunker)
	if err != nil {
		return fmt.Errorf("transferbench: %w", err)
	}
	m, err := c.Split(ctx, chunkertest.NewStream(o.Seed, o.Size), func(ch chunker.Chunk, b []byte) error {
		return seeder.st.Put(ctx, ch.Digest, b)
	})
	if err != nil {
		return fmt.Errorf("transferbench: chunk the blob: %w", err)
	}
	if err := seeder.e.Seed(ctx, m); err != nil {
		return fmt.Errorf("transferbench: %w", err)
	}
	res.SetupSeconds = time.Since(start).Seconds()
	res.Chunks = len(m.Chunks)

	puller, err := startNode(ctx, o, filepath.Join(tmp, "puller"), trackerwire.RolePeer, tr, "puller")
	if err != nil {
		return fmt.Errorf("transferbench: puller: %w", err)
	}
	defer func() { err = errors.Join(err, puller.close()) }()

	runtime.GC()
	resetPeakRSS()
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return fmt.Errorf("transferbench: %w", err)
		}
	}
	cpu0 := procstat.CPUTime()
	start = time.Now()
	got, err := puller.e.Pull(ctx, m.Digest, peer.PullOptions{})
	took := time.Since(start)
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return fmt.Errorf("transferbench: pull: %w", err)
	}
	res.TransferCPUSeconds = (procstat.CPUTime() - cpu0).Seconds()
	res.PeakRSSBytes, _ = procstat.PeakRSS()
	if !got.Equal(m) {
		return errors.New("transferbench: the pulled manifest differs from the seeded one")
	}
	res.TransferSeconds = took.Seconds()
	res.TransferMBps = float64(o.Size) / took.Seconds() / 1e6
	return nil
}

// resetPeakRSS asks Linux to restart the VmHWM peak from the current RSS.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// rawProtocol is the benchmark's own protocol on the raw hosts.
const rawProtocol = "/p2pd/bench-raw/1.0.0"

// rawStream writes Size bytes on one stream between two fresh hosts with
// the engines' transport stack and times it until the reader has them all.
func rawStream(ctx context.Context, o Options, res *Result) error {
	cfg := o.Engine
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	k1, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return err
	}
	k2, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return err
	}
	src, err := peer.NewHost(cfg, k1, nil)
	if err != nil {
		return fmt.Errorf("transferbench: raw host: %w", err)
	}
	defer src.Close()
	dst, err := peer.NewHost(cfg, k2, nil)
	if err != nil {
		return fmt.Errorf("transferbench: raw host: %w", err)
	}
	defer dst.Close()

	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	var once sync.Once
	dst.SetStreamHandler(rawProtocol, func(s network.Stream) {
		buf := make([]byte, 1<<20)
		n, err := io.CopyBuffer(io.Discard, s, buf)
		s.Close()
		once.Do(func() { got <- result{n, err} })
	})
	if err := src.Connect(ctx, lpeer.AddrInfo{ID: dst.ID(), Addrs: dst.Addrs()}); err != nil {
		return fmt.Errorf("transferbench: raw connect: %w", err)
	}
	s, err := src.NewStream(ctx, dst.ID(), rawProtocol)
	if err != nil {
		return fmt.Errorf("transferbench: raw stream: %w", err)
	}
	defer s.Reset()
	buf := make([]byte, 1<<20)
	gen := chunkertest.NewStream(o.Seed, o.Size)
	cpu0 := procstat.CPUTime()
	start := time.Now()
	for left := o.Size; left > 0; {
		b := buf[:min(int64(len(buf)), left)]
		gen.Read(b) // generating costs little next to TLS; it stands in for reading the data
		if _, err := s.Write(b); err != nil {
			return fmt.Errorf("transferbench: raw write: %w", err)
		}
		left -= int64(len(b))
	}
	if err := s.CloseWrite(); err != nil {
		return fmt.Errorf("transferbench: raw close: %w", err)
	}
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		return ctx.Err()
	}
	took := time.Since(start)
	if r.err != nil || r.n != o.Size {
		return fmt.Errorf("transferbench: raw stream delivered %d of %d bytes: %v", r.n, o.Size, r.err)
	}
	res.RawStreamSeconds = took.Seconds()
	res.RawStreamCPUSeconds = (procstat.CPUTime() - cpu0).Seconds()
	res.RawStreamMBps = float64(o.Size) / took.Seconds() / 1e6
	return nil
}
