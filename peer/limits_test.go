package peer_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"golang.org/x/sync/errgroup"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/byzantine"
	"github.com/p2pd/p2pd/peer/peertest"
)

// With one upload slot, requests beyond it are refused as Busy, and the
// downloads still complete.
func TestUploadSlots(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 2, Config: func(name string, cfg *peer.Config) {
		if name == "origin" {
			cfg.UploadSlots = 1
			cfg.ResendWindow = -1 // count only the slots' refusals
		}
		cfg.Sched.BusyBackoff = 20 * time.Millisecond
		cfg.Sched.MaxInflightPerPeer = 4
	}})
	data := chunkertest.Bytes(11, 1<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var g errgroup.Group
	for _, n := range c.Peers {
		g.Go(func() error {
			_, err := n.Engine.Pull(ctx, m.Digest, peer.PullOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Peers {
		verifyCopy(t, n, m, data)
	}
	busy := c.Origin.Stats().UploadBusy
	if busy == 0 {
		t.Errorf("no request was refused for want of a slot")
	}
	// The downloaders acknowledged every chunk (peerwire.Received), so no
	// slot waited out its 30 s.
	if n := c.Origin.Stats().UploadUnacked; n != 0 {
		t.Errorf("%d upload slots were freed without a Received", n)
	}
	if got := metricValue(t, c.Origin.Registry, "p2pd_peer_upload_busy_total"); got != float64(busy) {
		t.Errorf("upload_busy metric %v, stats %d", got, busy)
	}
}

// The per-peer upload rate limit is consulted for every piece: with a
// cap well below the transfer, it holds uploads back.
func TestUploadRateLimit(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1, Config: func(name string, cfg *peer.Config) {
		if name == "origin" {
			cfg.UploadRate = 2 << 20
			cfg.PieceSize = 64 << 10
		}
	}})
	data := chunkertest.Bytes(12, 1<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Peers[0].Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	st := c.Origin.Stats()
	if st.UploadRateDelay == 0 {
		t.Errorf("the upload rate limit never held an upload back")
	}
	if got := metricValue(t, c.Origin.Registry, "p2pd_peer_rate_limit_delay_seconds_total", "direction", "upload"); got <= 0 {
		t.Errorf("rate limit delay metric %v", got)
	}
	if c.Peers[0].Stats().DownloadRateDelay != 0 {
		t.Errorf("the unlimited downloader was held back")
	}
}

// startFakeClockOrigin starts an origin with a 10s resend window on a fake
// clock; adjust, if set, changes its configuration first.
func startFakeClockOrigin(t *testing.T, adjust func(*peer.Config)) (*peertest.Node, *clock.Fake) {
	t.Helper()
	tr := startTracker(t)
	clk := clock.NewFake(time.Now())
	cfg := peertest.TestConfig()
	cfg.Role = trackerwire.RoleOrigin
	cfg.ResendWindow = 10 * time.Second
	if adjust != nil {
		adjust(&cfg)
	}
	n := peertest.NewNode(t, "origin", tr, cfg)
	n.Clock = clk
	n.Start()
	return n, clk
}

// Within the resend window an origin sends a chunk to one peer only;
// others are told Deferred and fetch it from that peer, unless their
// request is escalated (the peers that have it failed them).
func TestResendWindow(t *testing.T) {
	n, clk := startFakeClockOrigin(t, nil)
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(18, 256<<10)), peertest.SmallChunks)
	c := m.Chunks[0].Digest
	ask := func(cn *rawConn) string { t.Helper(); got, _ := cn.ask(t, c, 0); return got }
	askFlags := func(cn *rawConn, flags peerwire.RequestFlags) string {
		t.Helper()
		got, _ := cn.ask(t, c, flags)
		return got
	}
	x, y := dialRaw(t, n), dialRaw(t, n)
	if got := ask(x); got != "Data" {
		t.Fatalf("first request answered with %s", got)
	}
	if got := ask(y); got != "Deferred" {
		t.Fatalf("a second peer within the window got %s, want Reject Deferred", got)
	}
	if got := ask(x); got != "Data" {
		t.Fatalf("the same peer asking again got %s, want Data", got)
	}
	if got := askFlags(y, peerwire.RequestEscalated); got != "Data" {
		t.Fatalf("an escalated request within the window got %s, want Data", got)
	}
	clk.Advance(11 * time.Second)
	if got := ask(y); got != "Data" {
		t.Fatalf("after the window the second peer got %s, want Data", got)
	}
	if got := n.Stats().UploadDeferred; got != 1 {
		t.Errorf("%d requests deferred, want 1", got)
	}
	if got := metricValue(t, n.Registry, "p2pd_peer_upload_deferred_total"); got != 1 {
		t.Errorf("upload_deferred metric %v, want 1", got)
	}
	if got := n.Stats().UploadEscalated; got != 1 {
		t.Errorf("%d escalated requests served within the window, want 1", got)
	}
}

// During a blob's first round an origin sends no chunk to a second peer,
// however long after the first, while some chunk of the blob has never
// gone out (package resend): the second copy would delay the first copy
// of a chunk nobody has. Once every chunk has gone out, only the window
// holds.
func TestFirstRoundHoldsSecondCopies(t *testing.T) {
	n, clk := startFakeClockOrigin(t, nil)
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(19, 256<<10)), peertest.SmallChunks)
	if len(m.Chunks) < 3 {
		t.Fatalf("%d chunks, want at least 3", len(m.Chunks))
	}
	x, y := dialRaw(t, n), dialRaw(t, n)
	x.interested(t, m.Digest)
	y.interested(t, m.Digest)
	ask := func(cn *rawConn, i int) string { t.Helper(); got, _ := cn.fetch(t, m.Chunks[i].Digest); return got }
	if got := ask(x, 0); got != "Data" {
		t.Fatalf("first copy of chunk 0: %s", got)
	}
	clk.Advance(11 * time.Second) // past the window, within the round
	if got := ask(y, 0); got != "Deferred" {
		t.Fatalf("a second copy of chunk 0 after the window, with %d chunks never sent: %s, want Reject Deferred", len(m.Chunks)-1, got)
	}
	for i := 1; i < len(m.Chunks); i++ {
		if got := ask(y, i); got != "Data" {
			t.Fatalf("first copy of chunk %d: %s", i, got)
		}
	}
	if got := ask(y, 0); got != "Data" {
		t.Fatalf("a second copy of chunk 0 after the round and the window: %s, want Data", got)
	}
	if got := ask(x, len(m.Chunks)-1); got != "Deferred" {
		t.Fatalf("a second copy within the window after the round: %s, want Reject Deferred", got)
	}
}

// A blob that repeats a chunk (a zero-filled region, say) ends its first
// round once every distinct chunk has gone out: the repeats are never asked
// for by themselves and must not hold second copies back for good.
func TestFirstRoundWithRepeatedChunks(t *testing.T) {
	n, clk := startFakeClockOrigin(t, nil)
	half := chunkertest.Bytes(20, 256<<10)
	m := peertest.SeedBlob(t, n, bytes.NewReader(append(append([]byte{}, half...), half...)), peertest.SmallChunks)
	distinct := map[chunker.Digest]bool{}
	for _, c := range m.Chunks {
		distinct[c.Digest] = true
	}
	if len(distinct) == len(m.Chunks) {
		t.Fatalf("no chunk of the blob repeats (%d chunks)", len(m.Chunks))
	}
	x, y := dialRaw(t, n), dialRaw(t, n)
	x.interested(t, m.Digest)
	y.interested(t, m.Digest)
	for d := range distinct {
		if got, _ := x.fetch(t, d); got != "Data" {
			t.Fatalf("first copy of %s: %s", d, got)
		}
	}
	clk.Advance(11 * time.Second) // past the window
	if got, _ := y.fetch(t, m.Chunks[0].Digest); got != "Data" {
		t.Fatalf("a second copy after every distinct chunk went out and the window passed: %s, want Data", got)
	}
}

// The host-wide caps shape every connection of the host: two peers
// pulling from an origin capped at rate share it, so the pulls take at
// least the time the cap allows for both copies (a lower bound: a slow
// machine only makes them slower).
func TestHostUploadRate(t *testing.T) {
	const rate = 4 << 20
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 2, Config: func(name string, cfg *peer.Config) {
		if name == "origin" {
			cfg.HostUploadRate = rate
			cfg.ResendWindow = -1 // let the origin send both copies
		}
	}})
	data := chunkertest.Bytes(13, 2<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var g errgroup.Group
	for _, n := range c.Peers {
		g.Go(func() error {
			_, err := n.Engine.Pull(ctx, m.Digest, peer.PullOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	fromOrigin := int64(0)
	for _, n := range c.Peers {
		verifyCopy(t, n, m, data)
		fromOrigin += int64(n.Stats().BytesFromOrigins)
	}
	// Burst allowance: the bucket starts full (64 KiB).
	min := time.Duration(float64(fromOrigin-(64<<10)) / rate * float64(time.Second))
	t.Logf("%d bytes from the origin in %v (cap %d B/s)", fromOrigin, took, rate)
	if took < min {
		t.Errorf("the origin sent %d bytes in %v, faster than its %d B/s cap allows (%v)", fromOrigin, took, rate, min)
	}
}

// A request refused for want of an upload slot does not count as the
// chunk being sent: under the resend window, the next peer asking for it
// once a slot is free gets it. (It used to be claimed before the slot
// check, holding the chunk back from everyone for the whole window.)
func TestBusyRefusalDoesNotClaimChunk(t *testing.T) {
	tr := startTracker(t)
	cfg := peertest.TestConfig()
	cfg.UploadSlots = 1
	cfg.ResendWindow = time.Hour
	// Keep the first upload going for a while: x, the largest chunk, takes
	// about a second and a half, long enough for B to connect and ask even
	// on a loaded machine (A reads nothing meanwhile, but x fits in the
	// stream's window, so only the rate holds the upload back).
	cfg.UploadRate = 64 << 10
	cfg.PieceSize = 16 << 10
	n := peertest.StartNode(t, "server", tr, cfg)
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(14, 1<<20)), peertest.SmallChunks)
	x, y := m.Chunks[0], m.Chunks[1]
	for _, c := range m.Chunks {
		if c.Size > x.Size {
			x = c
		}
	}
	if x == y {
		y = m.Chunks[0]
	}
	if x.Size < 96<<10 {
		t.Fatalf("the largest chunk is %d bytes: too small to keep the slot taken", x.Size)
	}

	request := func(name string, c chunker.Chunk) (network.Stream, *peerwire.Decoder) {
		h := rawHost(t)
		s, dec := rawStream(t, h, n)
		hello(t, h, s, dec)
		if err := peerwire.Encode(s, peerwire.Request{ReqID: 1, Chunk: c.Digest}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return s, dec
	}
	// next returns the next Data or Reject for request 1.
	next := func(name string, dec *peerwire.Decoder) peerwire.Message {
		t.Helper()
		for {
			msg, err := dec.Next()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			switch msg := msg.(type) {
			case peerwire.Data, peerwire.Reject:
				return msg
			}
		}
	}
	// A takes the only slot with chunk x.
	_, decA := request("A", x)
	if msg, ok := next("A", decA).(peerwire.Data); !ok {
		t.Fatalf("A: %#v, want Data", msg)
	}
	// B asks for y while the slot is taken: Busy.
	_, decB := request("B", y)
	if msg, ok := next("B", decB).(peerwire.Reject); !ok || msg.Code != peerwire.RejectBusy {
		t.Fatalf("B: %#v, want Reject Busy", msg)
	}
	// A's upload ends, freeing the slot.
	for got := uint32(0); ; {
		d, ok := next("A", decA).(peerwire.Data)
		if !ok {
			t.Fatalf("A: upload of x cut short")
		}
		if got += uint32(len(d.Payload)); d.Offset+uint32(len(d.Payload)) == x.Size {
			break
		}
	}
	// C asks for y: B's refusal did not claim it, so C gets it (retrying
	// while the slot is still being released).
	for deadline := time.Now().Add(10 * time.Second); ; {
		sC, decC := request("C", y)
		msg := next("C", decC)
		if _, ok := msg.(peerwire.Data); ok {
			break
		}
		r := msg.(peerwire.Reject)
		if r.Code != peerwire.RejectBusy || strings.Contains(r.Reason, "just sent") || time.Now().After(deadline) {
			t.Fatalf("C: %#v, want y's data", r)
		}
		sC.Reset()
	}
}

// On a slow link a deep pipeline takes longer than the request timeout to
// drain, but the peer is answering all along: the scheduler's clock runs
// only for the oldest request at a peer, and restarts as its data arrives,
// so nothing times out and nothing is fetched twice.
func TestSlowLinkDeepPipeline(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1, Config: func(name string, cfg *peer.Config) {
		cfg.RequestTimeout = time.Second
		if name == "origin" {
			cfg.UploadRate = 256 << 10 // 2s for the blob, with 8 requests queued at once
			cfg.PieceSize = 16 << 10
		}
		cfg.Sched.MaxInflightPerPeer = 8
	}})
	data := chunkertest.Bytes(19, 512<<10)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	if len(m.Chunks) < 4 {
		t.Fatalf("%d chunks: the pipeline is too short to drain slowly", len(m.Chunks))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := c.Peers[0]
	start := time.Now()
	if _, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	verifyCopy(t, p, m, data)
	if took < 1500*time.Millisecond {
		t.Fatalf("the pull took %v: the upload rate limit did not hold it back past the timeout", took)
	}
	if got := p.Stats().RequestTimeouts; got != 0 {
		t.Errorf("%d requests timed out on a slow but steady link", got)
	}
	if got := metricValue(t, p.Registry, "p2pd_peer_request_timeouts_total"); got != 0 {
		t.Errorf("request_timeouts metric %v, want 0", got)
	}
	if up := c.Origin.Stats().BytesUploaded; up != uint64(len(data)) {
		t.Errorf("the origin sent %d bytes for a %d-byte blob", up, len(data))
	}
}

// The resend window counts from when the chunk has been sent, not from when
// the request was accepted: on a slow link the first requester has it, and
// can pass it on, only then.
func TestResendWindowFromSend(t *testing.T) {
	n, clk := startFakeClockOrigin(t, func(cfg *peer.Config) {
		cfg.UploadRate = 32 << 10 // seconds of virtual time for the chunk
		cfg.PieceSize = 16 << 10
	})
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(20, 256<<10)), chunker.Config{MinSize: 64 << 10, AvgSize: 128 << 10, MaxSize: 256 << 10})
	c := m.Chunks[0]
	if c.Size < 128<<10 {
		t.Fatalf("chunk of %d bytes: too small to take a while", c.Size)
	}
	dial := func() (network.Stream, *peerwire.Decoder) {
		h := rawHost(t)
		s, dec := rawStream(t, h, n)
		hello(t, h, s, dec)
		return s, dec
	}
	// first returns the type of the first answer to a request for c. With
	// pump, virtual time passes until the whole chunk has arrived.
	first := func(s network.Stream, dec *peerwire.Decoder, req uint32, pump bool) peerwire.Type {
		t.Helper()
		if err := peerwire.Encode(s, peerwire.Request{ReqID: req, Chunk: c.Digest}); err != nil {
			t.Fatal(err)
		}
		if !pump {
			msg, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			return msg.Type()
		}
		type answer struct {
			typ peerwire.Type
			err error
		}
		done := make(chan answer, 1)
		go func() {
			got := 0
			var typ peerwire.Type
			for {
				msg, err := dec.Next()
				if err != nil {
					done <- answer{err: err}
					return
				}
				if typ == 0 {
					typ = msg.Type()
				}
				switch m := msg.(type) {
				case peerwire.Reject:
					done <- answer{typ: typ}
					return
				case peerwire.Data:
					if got += len(m.Payload); got == int(c.Size) {
						done <- answer{typ: typ}
						return
					}
				}
			}
		}()
		for {
			select {
			case a := <-done:
				if a.err != nil {
					t.Fatal(a.err)
				}
				return a.typ
			case <-time.After(time.Millisecond):
				clk.Advance(50 * time.Millisecond) // the rate limit waits on the engine's clock
			}
		}
	}
	x, xdec := dial()
	y, ydec := dial()
	start := clk.Now()
	if got := first(x, xdec, 1, true); got != peerwire.TypeData {
		t.Fatalf("first request answered with %s", got)
	}
	sent := clk.Now()
	if sent.Sub(start) < 2*time.Second {
		t.Fatalf("the chunk took %v of virtual time: the rate limit did not slow it down", sent.Sub(start))
	}
	// 11s after the request was accepted, but within 10s of the send.
	clk.Advance(start.Add(11 * time.Second).Sub(clk.Now()))
	if got := first(y, ydec, 1, false); got != peerwire.TypeReject {
		t.Fatalf("11s after the request but %v after the send, a second peer got %s, want Reject", start.Add(11*time.Second).Sub(sent), got)
	}
	clk.Advance(sent.Add(11 * time.Second).Sub(clk.Now()))
	if got := first(y, ydec, 2, false); got != peerwire.TypeData {
		t.Fatalf("after the window the second peer got %s, want Data", got)
	}
}

// A store that never answers a read (a hung disk, byzantine.Stall) holds
// the upload's slot only until the requester cancels: the Cancel abandons
// the read, so the slot serves the next request instead of being lost for
// the session's life.
func TestCancelFreesStalledRead(t *testing.T) {
	tr := startTracker(t)
	cfg := peertest.TestConfig()
	cfg.UploadSlots = 1
	cfg.ResendWindow = -1
	n := peertest.NewNode(t, "staller", tr, cfg)
	n.Wrap = byzantine.Stall
	n.Start()
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(15, 1<<20)), peertest.SmallChunks)
	x, y := m.Chunks[0], m.Chunks[1]

	h := rawHost(t)
	s, dec := rawStream(t, h, n)
	hello(t, h, s, dec)
	send := func(msg peerwire.Message) {
		t.Helper()
		if err := peerwire.Encode(s, msg); err != nil {
			t.Fatal(err)
		}
	}
	// nextReject returns the next Reject (the store sends no Data).
	nextReject := func() peerwire.Reject {
		t.Helper()
		for {
			msg, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := msg.(peerwire.Reject); ok {
				return r
			}
		}
	}
	// Request 1 takes the only slot and is never answered: request 2 is
	// refused for want of a slot.
	send(peerwire.Request{ReqID: 1, Chunk: x.Digest})
	send(peerwire.Request{ReqID: 2, Chunk: y.Digest})
	if r := nextReject(); r.ReqID != 2 || r.Code != peerwire.RejectBusy {
		t.Fatalf("%#v, want request 2 refused busy", r)
	}
	send(peerwire.Cancel{ReqID: 1})
	// Once the cancelled read lets go of the slot, a request is accepted
	// (and stalls in turn). Each round sends two requests and a Ping: the
	// peer answers in order, so the Rejects before the Pong are all
	// there will be for the two, and fewer than two means one of them took
	// the slot (either: the slot may come free between them).
	for id, deadline := uint32(3), time.Now().Add(10*time.Second); ; id += 2 {
		send(peerwire.Request{ReqID: id, Chunk: y.Digest})
		send(peerwire.Request{ReqID: id + 1, Chunk: x.Digest})
		send(peerwire.Ping{Nonce: uint64(id)})
		var refused []uint32
		for {
			msg, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			if p, ok := msg.(peerwire.Pong); ok && p.Nonce == uint64(id) {
				break
			}
			if r, ok := msg.(peerwire.Reject); ok {
				if r.Code != peerwire.RejectBusy || (r.ReqID != id && r.ReqID != id+1) {
					t.Fatalf("%#v, want request %d or %d refused busy", r, id, id+1)
				}
				refused = append(refused, r.ReqID)
			}
		}
		if len(refused) < 2 {
			break // one of them took the slot
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancelled request still holds the slot")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An escalated request within the resend window finds the peer the chunk
// went to hoarding it (it passed the chunk on to nobody). While other
// uploads run, the hoarder's requests are deferred, so that the origin's
// first copies go to peers that pass them on; once the origin is
// otherwise idle, it is served again.
func TestHoarderDeferred(t *testing.T) {
	n, clk := startFakeClockOrigin(t, func(cfg *peer.Config) {
		cfg.UploadRate = 32 << 10 // the fake clock stands still: an upload holds its slot
		cfg.PieceSize = 16 << 10
	})
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(22, 1<<20)), chunker.Config{MinSize: 64 << 10, AvgSize: 128 << 10, MaxSize: 256 << 10})
	if len(m.Chunks) < 3 {
		t.Fatalf("%d chunks, want at least 3", len(m.Chunks))
	}
	ask := func(cn *rawConn, k int, flags peerwire.RequestFlags) (string, uint32) {
		t.Helper()
		return cn.ask(t, m.Chunks[k].Digest, flags)
	}
	x, y, z := dialRaw(t, n), dialRaw(t, n), dialRaw(t, n)
	gotX, idX := ask(x, 0, 0)
	gotY, idY := ask(y, 0, peerwire.RequestEscalated)
	if gotX != "Data" || gotY != "Data" {
		t.Fatalf("chunk 0 to x: %s, escalated to y: %s; want Data twice", gotX, gotY)
	}
	if got, _ := ask(x, 1, 0); got != "Deferred" {
		t.Fatalf("x, found hoarding chunk 0, asked for chunk 1 while uploads run: %s, want Reject Deferred", got)
	}
	gotZ, idZ := ask(z, 1, 0)
	if gotZ != "Data" {
		t.Fatalf("z, no hoarder, asked for chunk 1: %s, want Data", gotZ)
	}
	if got := n.Stats().UploadHoarder; got != 1 {
		t.Errorf("%d requests deferred as a hoarder's, want 1", got)
	}
	if got := metricValue(t, n.Registry, "p2pd_peer_upload_hoarder_deferred_total"); got != 1 {
		t.Errorf("upload_hoarder_deferred metric %v, want 1", got)
	}
	// Once the other uploads are cancelled, the origin serves x again.
	for _, c := range []struct {
		cn *rawConn
		id uint32
	}{{x, idX}, {y, idY}, {z, idZ}} {
		if err := peerwire.Encode(c.cn.s, peerwire.Cancel{ReqID: c.id}); err != nil {
			t.Fatal(err)
		}
	}
	// The fake clock moves meanwhile (by less than the hoarder is
	// remembered), so that the rate limit lets a first Data frame out.
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				clk.Advance(time.Millisecond)
			}
		}
	}()
	defer func() { close(stop); <-ticked }()
	for tries := 0; ; tries++ {
		got, _ := ask(x, 2, 0)
		if got == "Data" {
			break
		}
		if got != "Deferred" || tries == 10_000 {
			t.Fatalf("x asking an idle origin for chunk 2 (try %d): %s, want Data", tries, got)
		}
	}
}

// rawConn is a session with an engine over which a test speaks the peer
// protocol itself.
type rawConn struct {
	s   network.Stream
	dec *peerwire.Decoder
	req uint32
}

// dialRaw opens a rawConn to n from a fresh host, Hello exchanged.
func dialRaw(t *testing.T, n *peertest.Node) *rawConn {
	t.Helper()
	return dialRawWith(t, n, 0)
}

// dialRawWith is dialRaw advertising features in the Hello.
func dialRawWith(t *testing.T, n *peertest.Node, features uint32) *rawConn {
	t.Helper()
	h := rawHost(t)
	s, dec := rawStream(t, h, n)
	helloWith(t, h, s, dec, features)
	return &rawConn{s: s, dec: dec}
}

// interested tells the node that cn wants blob b, so that the node
// counts uploads against it (and its first round).
func (cn *rawConn) interested(t *testing.T, b chunker.Digest) {
	t.Helper()
	if err := peerwire.Encode(cn.s, peerwire.Interested{Blob: b}); err != nil {
		t.Fatal(err)
	}
}

// fetch requests chunk c and reads all of it: it returns "Data" once the
// last byte has arrived, or the Reject's code, and the request's ID.
func (cn *rawConn) fetch(t *testing.T, c chunker.Digest) (string, uint32) {
	t.Helper()
	cn.req++
	return cn.roundTrip(t, peerwire.Request{ReqID: cn.req, Chunk: c}, func(m peerwire.Message) bool {
		d, ok := m.(peerwire.Data)
		return ok && int(d.Offset)+len(d.Payload) == int(d.Total)
	}), cn.req
}

// roundTrip sends m, request cn.req, and reads frames until the answer to
// it: the Reject's code, or the type of the first frame of the request
// that last reports true for. Frames of earlier requests are skipped. If
// nothing comes before the stream's deadline it returns "no answer" (an
// accepted upload the rate limit holds back, say), and the connection is
// of no further use.
func (cn *rawConn) roundTrip(t *testing.T, m peerwire.Message, last func(peerwire.Message) bool) string {
	t.Helper()
	if err := peerwire.Encode(cn.s, m); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := cn.dec.Next()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "no answer"
		}
		if err != nil {
			t.Fatal(err)
		}
		var id uint32
		switch a := msg.(type) {
		case peerwire.Reject:
			if a.ReqID == cn.req {
				return a.Code.String()
			}
			continue
		case peerwire.Data:
			id = a.ReqID
		case peerwire.ManifestData:
			id = a.ReqID
		default:
			continue
		}
		if id == cn.req && last(msg) {
			return msg.Type().String()
		}
	}
}

// ask requests chunk c and returns the first answer to the request, "Data"
// or the Reject's code (or "no answer": see roundTrip), and the request's
// ID.
func (cn *rawConn) ask(t *testing.T, c chunker.Digest, flags peerwire.RequestFlags) (string, uint32) {
	t.Helper()
	cn.req++
	return cn.roundTrip(t, peerwire.Request{ReqID: cn.req, Chunk: c, Flags: flags}, anyFrame), cn.req
}

func anyFrame(peerwire.Message) bool { return true }

// An uploader keeps a request's slot until the requester says it received
// the chunk (peerwire.Received), if the requester's Hello says it will: not
// merely until the bytes are in the stream's buffers. Without a Received
// the slot is freed writeTimeout (30 s) after the last byte was written. A
// requester that does not advertise the feature frees the slot on write.
func TestUploadSlotHeldUntilReceived(t *testing.T) {
	n, clk := startFakeClockOrigin(t, func(cfg *peer.Config) {
		cfg.UploadSlots = 1
		cfg.ResendWindow = -1
	})
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(23, 1<<20)), peertest.SmallChunks)
	if len(m.Chunks) < 6 {
		t.Fatalf("%d chunks, want at least 6", len(m.Chunks))
	}
	ask := func(cn *rawConn, k int) (string, uint32) {
		t.Helper()
		return cn.fetch(t, m.Chunks[k].Digest)
	}
	fetch := func(who string, cn *rawConn, k int) uint32 {
		t.Helper()
		got, id := ask(cn, k)
		if got != "Data" {
			t.Fatalf("%s, chunk %d with the slot free: %s, want Data", who, k, got)
		}
		return id
	}

	a := dialRawWith(t, n, peerwire.FeatureReceived)
	id := fetch("acknowledging peer", a, 0)
	if got, _ := ask(a, 1); got != "Busy" {
		t.Fatalf("chunk 1 before chunk 0's Received: %s, want Busy (the slot is still held)", got)
	}
	if err := peerwire.Encode(a.s, peerwire.Received{ReqID: id}); err != nil {
		t.Fatal(err)
	}
	// The Received and the next request travel in order on the stream.
	fetch("acknowledging peer after its Received", a, 1)

	// Unacknowledged, the slot is freed after 30 s.
	if got, _ := ask(a, 2); got != "Busy" {
		t.Fatalf("chunk 2 before chunk 1's Received: %s, want Busy", got)
	}
	clk.Advance(31 * time.Second)
	for tries := 0; ; tries++ {
		got, _ := ask(a, 2)
		if got == "Data" {
			break
		}
		if tries == 200 {
			t.Fatalf("chunk 2, 31 s after chunk 1 was written without a Received: still %s", got)
		}
		time.Sleep(10 * time.Millisecond) // the session's writer wakes on the fake clock
	}
	if got := metricValue(t, n.Registry, "p2pd_peer_upload_unacked_total"); got != 1 {
		t.Errorf("upload_unacked metric %v, want 1", got)
	}
	if got := n.Stats().UploadUnacked; got != 1 {
		t.Errorf("Stats.UploadUnacked %d, want 1", got)
	}
	a.s.Reset() // frees chunk 2's slot: the session ends

	// A 1.0 peer never acknowledges: its slot is freed once written.
	b := dialRaw(t, n)
	for tries := 0; ; tries++ {
		got, _ := ask(b, 3)
		if got == "Data" {
			break
		}
		if tries == 200 {
			t.Fatalf("chunk 3 after the first session ended: still %s", got)
		}
		time.Sleep(10 * time.Millisecond) // polls for the reset session's cleanup
	}
	fetch("peer without the feature", b, 4)
}

// Manifests have upload slots of their own: chunk uploads holding every
// chunk slot do not keep a manifest from a peer (a flood of chunk
// requests must not), while manifest requests beyond the manifest slots
// are refused Busy, so that an origin facing a crowd sends a few
// manifests at full speed rather than all of them at a crawl.
func TestManifestSlots(t *testing.T) {
	n, _ := startFakeClockOrigin(t, func(cfg *peer.Config) {
		cfg.UploadSlots = 1
		cfg.UploadRate = 32 << 10 // the fake clock stands still: an upload holds its slot
		cfg.PieceSize = 16 << 10
	})
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(25, 1<<20)), chunker.Config{MinSize: 64 << 10, AvgSize: 128 << 10, MaxSize: 256 << 10})
	getManifest := func(cn *rawConn) string {
		t.Helper()
		cn.req++
		return cn.roundTrip(t, peerwire.GetManifest{ReqID: cn.req, Blob: m.Digest}, anyFrame)
	}
	x, y := dialRaw(t, n), dialRaw(t, n)
	if got, _ := x.ask(t, m.Chunks[0].Digest, 0); got != "Data" {
		t.Fatalf("chunk 0 with the slot free: %s, want Data", got)
	}
	if got, _ := y.ask(t, m.Chunks[1].Digest, 0); got != "Busy" {
		t.Fatalf("chunk 1 while the one slot sends chunk 0: %s, want Busy", got)
	}
	if got := getManifest(y); got != "ManifestData" {
		t.Fatalf("manifest while the one chunk slot is held: %s, want ManifestData", got)
	}
	release := peer.TakeManifestSlots(n.Engine)
	if got := getManifest(y); got != "Busy" {
		t.Fatalf("manifest with every manifest slot taken: %s, want Reject Busy", got)
	}
	release()
	if got := getManifest(y); got != "ManifestData" {
		t.Fatalf("manifest once the manifest slots are free: %s, want ManifestData", got)
	}
}
