package origin

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Push results, the values of the "result" label.
const (
	resultCreated        = "created"         // stored and seeded (201)
	resultExists         = "exists"          // already stored (200)
	resultDigestMismatch = "digest_mismatch" // rolled back (400)
	resultUnauthorized   = "unauthorized"    // 401
	resultBadRequest     = "bad_request"     // bad digest parameter (400)
	resultTooLarge       = "too_large"       // rolled back if started (413)
	resultAborted        = "aborted"         // body ended early or client gone; rolled back
	resultNoSpace        = "no_space"        // store full; rolled back (507)
	resultSeedFailed     = "seed_failed"     // stored, seeding failed (500)
	resultError          = "error"           // anything else; rolled back
)

type metrics struct {
	pushes    *prometheus.CounterVec
	pushBytes prometheus.Counter
	duration  prometheus.Histogram
	requests  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, blobs func() float64) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_origin_pushes_total",
			Help: "Blob pushes handled, by result.",
		}, []string{"result"}),
		pushBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_origin_push_bytes_total",
			Help: "Bytes received in push bodies, including pushes that failed.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2pd_origin_push_duration_seconds",
			Help:    "Time to handle a push, from the request to the response.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 4, 12), // 1ms .. ~70min
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_origin_http_requests_total",
			Help: "HTTP requests, by route and status code.",
		}, []string{"route", "code"}),
	}
	for _, r := range []string{resultCreated, resultExists, resultDigestMismatch, resultUnauthorized, resultBadRequest,
		resultTooLarge, resultAborted, resultNoSpace, resultSeedFailed, resultError} {
		m.pushes.WithLabelValues(r)
	}
	collectors := []prometheus.Collector{
		m.pushes, m.pushBytes, m.duration, m.requests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_origin_blobs",
			Help: "Blobs stored (pinned) by the origin.",
		}, blobs),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("origin: registering metrics: %w", err)
		}
	}
	return m, nil
}
