package baseline

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/mse"
	"github.com/anacrolix/torrent/storage"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// RequestDataPerConn is the clients' MaxAllocPeerRequestDataPerConn: the
// bytes a client may hold for the requests of one peer that it has not
// sent yet. It is raised from anacrolix's default (1 MiB), with which the
// testbed's issue saw a seeder stall after about 1 MiB.
const RequestDataPerConn = 64 << 20

// blobName is the torrent's name, and so the blob's file name in each
// client's directory.
const blobName = "blob"

// BitTorrent runs s with github.com/anacrolix/torrent (v1.59.1): one
// seeder client per scenario origin, holding the blob, and one leecher
// client per honest peer, joining at its join time; all in this process
// on 127.0.0.1, each on its own port.
//
// The torrent is a v1 single-file torrent of the generated blob with
// pieces of pieceLength bytes. No DHT, no trackers, no uTP, no header
// obfuscation or encryption, no port forwarding: a leecher is given the
// addresses of the seeders and of the leechers that joined before it
// (Torrent.AddPeers), and finds later ones as they connect to it (and
// by PEX). Every client seeds (Config.Seed), leechers too once they
// complete, until the run ends.
//
// Each client is made without sockets of its own (DisableTCP,
// DisableUTP) and given, with Client.AddListener and Client.AddDialer, a
// listener and a dialer that wrap every connection with its host's link.
// A leecher's bytes read count as FromOrigins on connections to a
// seeder (its listen address, or the address it dialed from) and as
// FromPeers otherwise. A leecher completes when the client has verified
// every piece; then the SHA-256 of its file is checked against the blob's.
//
// Replication counts, for each piece, the leechers that have verified it.
func BitTorrent(ctx context.Context, s scenario.Scenario, o Options) (*result.Result, error) {
	return start(ctx, s, o, bitTorrent)
}

func bitTorrent(ctx context.Context, s scenario.Scenario, o Options, tmp string) (res *result.Result, err error) {
	sw := &swarm{dir: tmp, log: o.Logger, origins: make(map[string]bool), leechers: make(map[*member]*torrent.Torrent)}
	defer func() { err = errors.Join(err, sw.close()) }()
	if err := sw.makeTorrent(s); err != nil {
		return nil, err
	}
	for i := range s.Origins.Count {
		if err := sw.seed(ctx, i, s.OriginLink(i)); err != nil {
			return nil, err
		}
	}
	c := newCrowd(s, o)
	return c.run(ctx, baseline{
		mode:         ModeBitTorrent,
		fetch:        sw.leech,
		originEgress: sw.egress.Load,
		holders:      sw.holders,
	}, o.Progress), nil
}

// swarm is the BitTorrent baseline's clients.
type swarm struct {
	dir  string
	log  *slog.Logger
	mi   *metainfo.MetaInfo
	blob chunker.Digest
	// egress is what the seeders wrote.
	egress atomic.Int64

	mu       sync.Mutex
	clients  []*btClient
	addrs    []string        // listen addresses: the seeders', then the leechers' as they join
	origins  map[string]bool // addresses of the seeders' ends of connections
	leechers map[*member]*torrent.Torrent
}

type btClient struct {
	cl    *torrent.Client
	ln    net.Listener
	store storage.ClientImplCloser
}

// makeTorrent writes the blob to the seeders' directory and builds its
// metainfo.
func (sw *swarm) makeTorrent(s scenario.Scenario) error {
	dir := filepath.Join(sw.dir, "seed")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	path := filepath.Join(dir, blobName)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	sw.blob, err = writeBlob(s, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("baseline: writing the blob: %w", err)
	}
	info := metainfo.Info{PieceLength: pieceLength(s)}
	if err := info.BuildFromFilePath(path); err != nil {
		return fmt.Errorf("baseline: torrent: %w", err)
	}
	b, err := bencode.Marshal(info)
	if err != nil {
		return fmt.Errorf("baseline: torrent: %w", err)
	}
	sw.mi = &metainfo.MetaInfo{InfoBytes: b}
	return nil
}

// newClient starts a client that keeps its data in dir and connects
// through h.
func (sw *swarm) newClient(name, dir string, h host, onDial func(net.Conn)) (*btClient, *torrent.Torrent, error) {
	lg := sw.log.With("node", name)
	cfg := torrent.NewDefaultClientConfig()
	cfg.DataDir = dir
	st := storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   dir,
		PieceCompletion: storage.NewMapPieceCompletion(),
		UsePartFiles:    g.Some(false),
		Logger:          lg,
	})
	cfg.DefaultStorage = st
	cfg.Slogger = lg
	cfg.NoDHT = true
	cfg.DisableTrackers = true
	cfg.DisableTCP, cfg.DisableUTP = true, true // the shaped listener and dialer below instead
	cfg.DisableIPv6 = true
	cfg.NoDefaultPortForwarding = true
	cfg.DisableWebtorrent, cfg.DisableWebseeds = true, true
	cfg.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: true}
	cfg.CryptoProvides = mse.CryptoMethodPlaintext
	cfg.Seed = true
	cfg.MaxAllocPeerRequestDataPerConn = RequestDataPerConn
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("baseline: %s: %w", name, err)
	}
	c := &btClient{cl: cl, store: st}
	sw.mu.Lock()
	sw.clients = append(sw.clients, c)
	sw.mu.Unlock()
	if c.ln, err = h.listen(); err != nil {
		return nil, nil, fmt.Errorf("baseline: %s: %w", name, err)
	}
	cl.AddListener(c.ln)
	cl.AddDialer(dialer{h, onDial})
	t, err := cl.AddTorrent(sw.mi)
	if err != nil {
		return nil, nil, fmt.Errorf("baseline: %s: %w", name, err)
	}
	return c, t, nil
}

// seed starts the seeder of origin i and waits until it has checked its
// copy of the blob.
func (sw *swarm) seed(ctx context.Context, i int, link *shape.Link) error {
	name := fmt.Sprintf("origin-%d", i)
	h := host{link: link, out: &sw.egress}
	c, t, err := sw.newClient(name, filepath.Join(sw.dir, "seed"), h, func(c net.Conn) {
		sw.mu.Lock()
		sw.origins[c.LocalAddr().String()] = true
		sw.mu.Unlock()
	})
	if err != nil {
		return err
	}
	if err := t.VerifyDataContext(ctx); err != nil {
		return fmt.Errorf("baseline: %s: %w", name, err)
	}
	select {
	case <-t.Complete().On():
	case <-ctx.Done():
		return ctx.Err()
	}
	addr := c.ln.Addr().String()
	sw.mu.Lock()
	sw.origins[addr] = true
	sw.addrs = append(sw.addrs, addr)
	sw.mu.Unlock()
	return nil
}

// isOrigin reports whether c's remote end is a seeder's.
func (sw *swarm) isOrigin(c net.Conn) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.origins[c.RemoteAddr().String()]
}

// leech is m's fetch: it starts m's client, connects it to the swarm and
// waits until it holds every piece.
func (sw *swarm) leech(ctx context.Context, m *member) (time.Time, error) {
	h := host{link: m.link, in: func(c net.Conn) *atomic.Int64 {
		if sw.isOrigin(c) {
			return &m.fromOrigins
		}
		return &m.fromPeers
	}}
	dir := filepath.Join(sw.dir, m.spec.Name)
	c, t, err := sw.newClient(m.spec.Name, dir, h, nil)
	if err != nil {
		return time.Time{}, err
	}
	sw.mu.Lock()
	peers := make([]torrent.PeerInfo, 0, len(sw.addrs))
	for _, a := range sw.addrs {
		addr, err := net.ResolveTCPAddr("tcp4", a)
		if err != nil {
			sw.mu.Unlock()
			return time.Time{}, err
		}
		peers = append(peers, torrent.PeerInfo{Addr: addr, Trusted: true})
	}
	sw.addrs = append(sw.addrs, c.ln.Addr().String())
	sw.leechers[m] = t
	sw.mu.Unlock()
	t.AddPeers(peers)
	t.DownloadAll()
	select {
	case <-t.Complete().On():
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	done := time.Now()
	return done, sw.verify(filepath.Join(dir, blobName))
}

// verify checks that the file at path is the blob.
func (sw *swarm) verify(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if d := chunker.Digest(h.Sum(nil)); d != sw.blob {
		return fmt.Errorf("the downloaded file hashes to %s, not %s", d, sw.blob)
	}
	return nil
}

// holders counts, for every piece, the leechers that have verified it.
func (sw *swarm) holders(counts []int) {
	sw.mu.Lock()
	ts := make([]*torrent.Torrent, 0, len(sw.leechers))
	for _, t := range sw.leechers {
		ts = append(ts, t)
	}
	sw.mu.Unlock()
	for _, t := range ts {
		i := 0
		for _, run := range t.PieceStateRuns() {
			for range run.Length {
				if run.Complete && i < len(counts) {
					counts[i]++
				}
				i++
			}
		}
	}
}

// close stops every client, then closes their listeners (a client's
// accept loop ends when its listener fails after the client closed) and
// storage.
func (sw *swarm) close() error {
	sw.mu.Lock()
	clients := sw.clients
	sw.clients = nil
	sw.mu.Unlock()
	var wg sync.WaitGroup
	closeErrs := make([][]error, len(clients))
	for i, c := range clients {
		wg.Go(func() { closeErrs[i] = c.cl.Close() })
	}
	wg.Wait()
	var errs []error
	for i, c := range clients {
		errs = append(errs, closeErrs[i]...)
		if c.ln != nil {
			errs = append(errs, c.ln.Close())
		}
		errs = append(errs, c.store.Close())
	}
	return errors.Join(errs...)
}

// dialer is a torrent.Dialer that dials through a host.
type dialer struct {
	h      host
	onDial func(net.Conn) // if set, told of every connection made, before it is used
}

func (d dialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.h.dial(ctx, addr)
	if err == nil && d.onDial != nil {
		d.onDial(c)
	}
	return c, err
}

func (d dialer) DialerNetwork() string { return "tcp4" }
