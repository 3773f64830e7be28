// Package byzantine wraps a peer engine's store so that the engine
// misbehaves the way hostile or broken peers do: serve corrupt chunks,
// claim chunks it does not have, or never answer. The engine itself is unchanged, so the
// rest of the swarm meets the real protocol, only with bad data. Tests and
// the testbed's byzantine peers use it; p2pd never does.
package byzantine

import (
	"context"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/peer"
)

// CorruptReads wraps s so that every chunk read from it has one byte
// flipped: an engine using it serves corrupt chunks (Has and Put are
// untouched, so it downloads honestly).
func CorruptReads(s peer.Store) peer.Store { return corrupt{s} }

type corrupt struct{ peer.Store }

func (c corrupt) ReadChunk(ctx context.Context, d chunker.Digest, dst []byte) ([]byte, error) {
	b, err := c.Store.ReadChunk(ctx, d, dst)
	if err == nil && len(b) > 0 {
		b[len(b)/2] ^= 0x55
	}
	return b, err
}

// ClaimAll wraps s so that it claims to hold every chunk: an engine using
// it announces full bitfields, believes every download complete at once,
// and then fails the requests for chunks it never had (a liar).
func ClaimAll(s peer.Store) peer.Store { return liar{s} }

type liar struct{ peer.Store }

func (liar) Has(chunker.Digest) bool { return true }

// Stall wraps s so that every chunk read from it blocks until its context
// ends: an engine using it accepts chunk requests and never answers them
// (a stalled peer; it downloads honestly).
func Stall(s peer.Store) peer.Store { return stall{s} }

type stall struct{ peer.Store }

func (stall) ReadChunk(ctx context.Context, _ chunker.Digest, _ []byte) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
