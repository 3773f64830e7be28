package peer_test

import (
	"bytes"
	"testing"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// An engine that knows its upload rate paces chunk data to it, in pieces
// of a few tens of milliseconds of the link, so that a control frame it sends
// while uploading (here a Pong) goes out between two pieces. Unpaced, as
// much of the chunk as the stream's window holds would sit in its queue
// ahead of the Pong.
func TestPacedUploadLetsControlThrough(t *testing.T) {
	const rate = 512 << 10 // bytes per second: the 1 MiB chunk takes 2 s
	tr := startTracker(t)
	cfg := peertest.TestConfig()
	cfg.HostUploadRate = rate
	n := peertest.NewNode(t, "seeder", tr, cfg)
	n.Start()
	one := chunker.Config{MinSize: 1 << 20, AvgSize: 2 << 20, MaxSize: 4 << 20}
	m := peertest.SeedBlob(t, n, bytes.NewReader(chunkertest.Bytes(29, 1<<20)), one)
	if len(m.Chunks) != 1 {
		t.Fatalf("%d chunks, want 1", len(m.Chunks))
	}
	cn := dialRaw(t, n)
	if err := peerwire.Encode(cn.s, peerwire.Request{ReqID: 1, Chunk: m.Chunks[0].Digest}); err != nil {
		t.Fatal(err)
	}
	var pieces, maxPiece, got int
	pinged, ponged := false, false
	var atPing, atPong int // chunk bytes received when the Ping went, when the Pong came
	for got < 1<<20 {
		msg, err := cn.dec.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch f := msg.(type) {
		case peerwire.Data:
			pieces++
			got += len(f.Payload)
			maxPiece = max(maxPiece, len(f.Payload))
			if !pinged {
				if err := peerwire.Encode(cn.s, peerwire.Ping{Nonce: 7}); err != nil {
					t.Fatal(err)
				}
				pinged, atPing = true, got
			}
		case peerwire.Pong:
			ponged, atPong = true, got
		case peerwire.Reject:
			t.Fatalf("request rejected: %s", f.Code)
		}
	}
	// Unpaced, 393 KiB of the chunk came between the Ping and the Pong
	// (the stream's window); paced, none. The limit leaves a paced engine
	// a quarter of a second to answer.
	switch {
	case !ponged:
		t.Errorf("the Pong came after the chunk's last byte (%d pieces): control frames wait behind the upload", pieces)
	case atPong-atPing > 128<<10:
		t.Errorf("%d bytes of the chunk came between the Ping and the Pong: control frames wait behind the upload", atPong-atPing)
	}
	want := peer.PieceFor(rate, peer.DefaultPieceSize)
	if maxPiece > want {
		t.Errorf("pieces of up to %d bytes, want at most %d at %d B/s", maxPiece, want, rate)
	}
	if want >= peer.DefaultPieceSize {
		t.Fatalf("the paced piece (%d) is no smaller than the default (%d): the test shows nothing", want, peer.DefaultPieceSize)
	}
}
