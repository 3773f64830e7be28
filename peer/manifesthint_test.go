package peer_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// next reads frames from cn until one that want accepts, failing the test
// if the stream's deadline passes first.
func (cn *rawConn) next(t *testing.T, what string, want func(peerwire.Message) bool) peerwire.Message {
	t.Helper()
	for {
		msg, err := cn.dec.Next()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if want(msg) {
			return msg
		}
	}
}

// A peer asked for a manifest it does not hold sends its bitfield to the
// asker once it gets the blob: the ask counts as interest.
func TestManifestAskCountsAsInterest(t *testing.T) {
	n := peertest.NewNode(t, "b", startTracker(t), peertest.TestConfig())
	n.Start()
	data := chunkertest.Bytes(31, 256<<10)
	blob := chunker.Sum(data)
	cn := dialRaw(t, n)
	cn.req++
	if got := cn.roundTrip(t, peerwire.GetManifest{ReqID: cn.req, Blob: blob}, anyFrame); got != "NotFound" {
		t.Fatalf("manifest of a blob the peer lacks: %s, want NotFound", got)
	}
	m := peertest.SeedBlob(t, n, bytes.NewReader(data), peertest.SmallChunks)
	if m.Digest != blob {
		t.Fatalf("seeded %s, asked for %s", m.Digest, blob)
	}
	bf := cn.next(t, "the bitfield", func(msg peerwire.Message) bool {
		b, ok := msg.(peerwire.Bitfield)
		return ok && b.Blob == blob
	}).(peerwire.Bitfield)
	if int(bf.NumChunks) != len(m.Chunks) {
		t.Fatalf("bitfield of %d chunks, want %d", bf.NumChunks, len(m.Chunks))
	}
}

// A pull looking for a manifest asks a peer that answered NotFound again
// as soon as that peer's bitfield shows it has the blob, not a second
// later: here the pulling engine's clock stands still, so only the
// bitfield can bring the second ask.
func TestManifestAskedAgainWhenPeerGetsIt(t *testing.T) {
	n := peertest.NewNode(t, "a", startTracker(t), peertest.TestConfig())
	n.Clock = clock.NewFake(time.Now())
	n.Start()
	cn := dialRaw(t, n)
	blob := chunker.Sum([]byte("a blob only the raw peer will have"))

	ctx, cancel := context.WithCancel(context.Background())
	pulled := make(chan error, 1)
	go func() {
		_, err := n.Engine.Pull(ctx, blob, peer.PullOptions{})
		pulled <- err
	}()
	defer func() {
		cancel()
		<-pulled
	}()

	isAsk := func(msg peerwire.Message) bool {
		g, ok := msg.(peerwire.GetManifest)
		return ok && g.Blob == blob
	}
	ask := cn.next(t, "the first GetManifest", isAsk).(peerwire.GetManifest)
	for _, m := range []peerwire.Message{
		peerwire.Reject{ReqID: ask.ReqID, Code: peerwire.RejectNotFound, Reason: "not yet"},
		peerwire.NewBitset(10).Bitfield(blob),
	} {
		if err := peerwire.Encode(cn.s, m); err != nil {
			t.Fatal(err)
		}
	}
	if again := cn.next(t, "a second GetManifest after the bitfield", isAsk).(peerwire.GetManifest); again.ReqID == ask.ReqID {
		t.Fatalf("second ask reuses request %d", ask.ReqID)
	}
}
