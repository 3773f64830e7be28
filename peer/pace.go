package peer

import (
	"time"

	"golang.org/x/time/rate"
)

// Pacing. A session's writer hands chunk data to its stream piece by
// piece, and control frames (Requests, Haves, Received) between pieces.
// The stream takes data as fast as the multiplexer queues it, and on a
// link slower than the host, much faster than the link carries it: the
// queue fills with a chunk or more, and every control frame written after
// it waits behind it, for seconds on a slow link shared by several
// uploads. The requests this peer makes and the chunks it announces are
// then late, and so is the Received that frees the uploader's slot.
//
// When the engine knows its upload rate (Config.HostUploadRate, or the
// testbed's emulated link), the writers therefore draw every piece from
// one token bucket at that rate, a little under it, so that data reaches
// the streams no faster than the link drains it, and control frames,
// which never wait for the bucket but are charged to it, find the queue
// short. Pieces shrink to about paceSlice of link time, so that a control
// frame waits behind one short piece per upload rather than a whole chunk.
// In an emulated 100-peer fan-out on 3 Mbit/s links, the time from a
// chunk's last byte written to its Received fell from 1.60 s to 0.66 s
// (with 20 ms pieces; docs/benchmarks.md, "Session 8"). 50 ms pieces of
// at least 8 KiB cost fewer frames and wake-ups: with 4 KiB ones the
// emulated 1,000-peer fan-out was host-bound.
const (
	// paceShare of the link rate goes to paced data: the rest is for the
	// TLS, multiplexer and frame headers, which the bucket does not see.
	paceShare = 0.98
	// paceSlice is the link time a paced piece takes (unless that is
	// less than minPacedPiece).
	paceSlice = 50 * time.Millisecond
	// minPacedPiece bounds paced pieces from below: smaller ones cost
	// more in headers and system calls than they save in waiting.
	minPacedPiece = 8 << 10
)

// newPacer returns the bucket that paces uploads at upRate bytes per
// second and the piece size under it, or nil and maxPiece when the rate is
// unknown (0).
func newPacer(upRate int64, maxPiece int) (*rate.Limiter, int) {
	piece := PieceFor(upRate, maxPiece)
	if upRate <= 0 {
		return nil, piece
	}
	return rate.NewLimiter(rate.Limit(paceShare*float64(upRate)), piece), piece
}

// PieceFor returns the Data payload an engine with Config.PieceSize
// maxPiece uses on a host with upload rate upRate (bytes per second; 0 if
// unknown): maxPiece, or less when the rate is known and slow. The
// simulator charges control messages for waiting behind pieces of this
// size.
func PieceFor(upRate int64, maxPiece int) int {
	if upRate <= 0 {
		return maxPiece
	}
	return min(maxPiece, max(minPacedPiece, int(float64(upRate)*paceSlice.Seconds())))
}

// charge takes n bytes from the bucket lim without waiting: bytes that
// went out around it (control frames), which push back the pieces that
// come next.
func charge(lim *rate.Limiter, now time.Time, n int) {
	if lim == nil {
		return
	}
	for b := lim.Burst(); n > 0; n -= b {
		lim.ReserveN(now, min(n, b))
	}
}
