package scenario

import (
	"math"
	"time"
)

// Bound is the fluid lower bound on the time for every honest peer to get
// the blob (Kumar and Ross, "Peer-assisted file distribution: the minimum
// distribution time", 2006):
//
//	T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i))
//
// F is the blob size, u_s the origins' total upload capacity, d_min the
// smallest download capacity among the N honest peers and Σu_i their
// total upload capacity. Byzantine peers are left out of N and Σu_i: they
// take nothing that counts and give nothing useful. An unlimited link
// (rate 0) drops its term. The fluid model assumes a flash crowd (all
// peers present from t=0), no latency, and data that can be forwarded the
// instant it arrives; Pipeline is the term that chunking adds.
type Bound struct {
	Seconds float64 `json:"bound_s"`
	// Terms are the three terms, in seconds: origin upload, slowest
	// download, and aggregate upload. 0 where a rate is unlimited.
	OriginTerm    float64 `json:"origin_term_s"`
	DownloadTerm  float64 `json:"download_term_s"`
	AggregateTerm float64 `json:"aggregate_term_s"`
	// Pipeline is ≈ log2(N)·chunk/u: the time for one average chunk to
	// travel down a binary dissemination tree of N peers, which no
	// store-and-forward chunked system avoids. Reported, not added.
	Pipeline float64 `json:"pipeline_s"`
}

// Bound computes the fluid bound for s, with F the blob's size.
func (s Scenario) Bound() Bound { return s.BoundFor(int64(s.Blob.Size)) }

// BoundFor is Bound with F = fetch bytes: a delta run (Blob.Base) uses
// Delta.ChangedChunkBytes, what each peer must fetch when it holds
// version 1 already.
func (s Scenario) BoundFor(fetch int64) Bound {
	f := float64(fetch)
	us := float64(s.Origins.Up) * float64(s.Origins.Count)
	var n, sumUp float64
	dmin := math.Inf(1)
	umin := math.Inf(1)
	unlimitedUp := false
	for _, c := range s.Classes {
		if c.Behavior != Honest && c.Behavior != "" || c.Count == 0 {
			continue
		}
		n += float64(c.Count)
		if c.Up <= 0 {
			unlimitedUp = true
		} else {
			sumUp += float64(c.Up) * float64(c.Count)
			umin = min(umin, float64(c.Up))
		}
		if c.Down > 0 {
			dmin = min(dmin, float64(c.Down))
		}
	}
	var b Bound
	if us > 0 {
		b.OriginTerm = f / us
	}
	if !math.IsInf(dmin, 1) {
		b.DownloadTerm = f / dmin
	}
	if us > 0 && !unlimitedUp {
		b.AggregateTerm = n * f / (us + sumUp)
	}
	b.Seconds = max(b.OriginTerm, b.DownloadTerm, b.AggregateTerm)
	if !math.IsInf(umin, 1) && n > 1 {
		b.Pipeline = math.Log2(n) * float64(s.Blob.Chunker.AvgSize) / umin
	}
	return b
}

// Duration returns the bound as a time.Duration.
func (b Bound) Duration() time.Duration { return time.Duration(b.Seconds * float64(time.Second)) }
