package tracker

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/tracker/peerstore"
)

// Announce results, the values of the "result" label.
const (
	resultOK        = "ok"
	resultNeedFull  = "need_full"
	resultStopped   = "stopped"
	resultMalformed = "malformed"
	resultTooLarge  = "too_large"
	resultInvalid   = "invalid"
	resultConflict  = "conflict"
	resultError     = "error"
)

type metrics struct {
	announces *prometheus.CounterVec
	duration  prometheus.Histogram
	handedOut prometheus.Histogram
	expired   prometheus.Counter
	requests  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, store peerstore.Store) (*metrics, error) {
	m := &metrics{
		announces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_tracker_announces_total",
			Help: "Announces handled, by result.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2pd_tracker_announce_duration_seconds",
			Help:    "Time to handle an announce, from reading the body to writing the response.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16), // 25µs .. 0.8s
		}),
		handedOut: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2pd_tracker_handout_peers",
			Help:    "Peers handed out per successful announce.",
			Buckets: []float64{0, 1, 2, 5, 10, 20, 50, 100, 200},
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_tracker_expired_records_total",
			Help: "Peer records removed by the expiry sweep.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_tracker_http_requests_total",
			Help: "HTTP requests, by route and status code.",
		}, []string{"route", "code"}),
	}
	for _, r := range []string{resultOK, resultNeedFull, resultStopped, resultMalformed, resultTooLarge, resultInvalid, resultConflict, resultError} {
		m.announces.WithLabelValues(r)
	}
	stat := func(f func(peerstore.Stats) int) func() float64 {
		return func() float64 {
			s, err := store.Stats(context.Background())
			if err != nil {
				return 0
			}
			return float64(f(s))
		}
	}
	collectors := []prometheus.Collector{
		m.announces, m.duration, m.handedOut, m.expired, m.requests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_tracker_swarms",
			Help: "Swarms with records.",
		}, stat(func(s peerstore.Stats) int { return s.Swarms })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2pd_tracker_peers",
			Help: "Peer records over all swarms (one per peer and blob).",
		}, stat(func(s peerstore.Stats) int { return s.Peers })),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tracker: registering metrics: %w", err)
		}
	}
	return m, nil
}
