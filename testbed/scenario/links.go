package scenario

import (
	"context"
	"time"

	"github.com/p2pd/p2pd/internal/shape"
)

// Shape builds the emulated link l, with seed for its jitter.
func (l Link) Shape(seed uint64) *shape.Link {
	return shape.New(shape.Config{Up: int64(l.Up), Down: int64(l.Down), Latency: l.Latency, Jitter: l.Jitter, Loss: l.Loss, Seed: seed})
}

// OriginLink is origin i's emulated link. Every mode and baseline that
// emulates links builds them here, so they run on the same links, jitter
// included.
func (s Scenario) OriginLink(i int) *shape.Link {
	return s.Origins.Link.Shape(s.Seed + uint64(i)<<32)
}

// PeerLink is p's emulated link (see OriginLink).
func (s Scenario) PeerLink(p Peer) *shape.Link {
	return p.Link.Shape(s.Seed ^ uint64(p.Index+1)*0x9e3779b97f4a7c15)
}

// SleepUntil waits until t; false if ctx ended first. Runs use it to
// start peers and fire events on schedule.
func SleepUntil(ctx context.Context, t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(wait)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
