package peer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Label values of the metrics.
const (
	sourcePeer   = "peer"
	sourceOrigin = "origin"

	// Ban and penalty reasons.
	reasonCorrupt  = "corrupt_chunks"     // the scheduler banned it: chunks failed verification
	reasonProtocol = "protocol_violation" // malformed, oversized or unexpected frames
	reasonManifest = "bad_manifest"       // a manifest that is not the blob's
	reasonLiar     = "bitfield_lie"       // chunks it advertised, then said it did not have
	reasonFlood    = "request_flood"      // far more chunk requests at once than any engine sends

	// Dial failure stages.
	dialConnect   = "connect"
	dialHandshake = "handshake"

	dirUpload   = "upload"
	dirDownload = "download"
)

// Stats are an engine's counters since it was created, the same figures
// its Prometheus metrics export.
type Stats struct {
	// BytesUploaded counts chunk payload bytes sent to peers.
	BytesUploaded uint64
	// BytesFromPeers and BytesFromOrigins count chunk payload bytes
	// received in answer to this engine's requests, corrupt ones included.
	BytesFromPeers   uint64
	BytesFromOrigins uint64
	// ChunksVerified and ChunksRejected count received chunks that did
	// and did not match their digest.
	ChunksVerified uint64
	ChunksRejected uint64
	// Bans and Penalties count peers banned and protocol violations.
	Bans      uint64
	Penalties uint64
	// UploadBusy counts requests refused for want of an upload slot;
	// UploadDeferred those refused because the chunk had just been sent to
	// another peer (Config.ResendWindow).
	UploadBusy     uint64
	UploadDeferred uint64
	// UploadEscalated counts requests served within the resend window
	// because the requester marked them escalated.
	UploadEscalated uint64
	// UploadHoarder counts requests deferred because the requester hoards
	// what this engine sends it (see Config.ResendWindow).
	UploadHoarder uint64
	// UploadUnacked counts upload slots freed because the requester, which
	// acknowledges what it receives (peerwire.FeatureReceived), sent no
	// Received for writeTimeout after the upload's last byte was written.
	UploadUnacked uint64
	// RequestTimeouts counts chunk requests this engine cancelled because
	// the peer stalled: it sent nothing towards its oldest request for
	// the request timeout (sched.Config.RequestTimeout).
	RequestTimeouts uint64
	// DialFailures counts this engine's dials that did not end in a
	// session: the connection (TCP, TLS, yamux, the libp2p dial backoff
	// after an earlier failure) or the protocol handshake failed.
	DialFailures uint64
	// UploadRateDelay and DownloadRateDelay add up the waits the
	// per-peer rate limits imposed.
	UploadRateDelay   time.Duration
	DownloadRateDelay time.Duration
	// Connections is the number of peers with an open protocol stream.
	Connections int
}

type metrics struct {
	downloaded   *prometheus.CounterVec
	dlPeer       prometheus.Counter
	dlOrigin     prometheus.Counter
	uploaded     prometheus.Counter
	verified     prometheus.Counter
	rejected     prometheus.Counter
	bans         *prometheus.CounterVec
	penalties    *prometheus.CounterVec
	conns        prometheus.Gauge
	announces    *prometheus.CounterVec
	rateDelay    *prometheus.CounterVec
	upDelay      prometheus.Counter
	downDelay    prometheus.Counter
	busy         prometheus.Counter
	deferred     prometheus.Counter
	escalated    prometheus.Counter
	hoarder      prometheus.Counter
	unacked      prometheus.Counter
	timeouts     prometheus.Counter
	dialFails    *prometheus.CounterVec
	pullDuration prometheus.Histogram
	pullChecks   *prometheus.CounterVec

	// Mirrors of the counters for Stats.
	nUploaded, nPeer, nOrigin, nVerified, nRejected, nBans, nPenalties, nBusy, nDeferred, nEscalated, nHoarder, nUnacked, nTimeouts, nDialFails atomic.Uint64
	nUpDelay, nDownDelay                                                                                                                        atomic.Int64
	nConns                                                                                                                                      atomic.Int64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		downloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_peer_bytes_downloaded_total",
			Help: "Chunk payload bytes received in answer to this engine's requests, by source (peer or origin).",
		}, []string{"source"}),
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_bytes_uploaded_total",
			Help: "Chunk payload bytes sent to peers.",
		}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_chunks_verified_total",
			Help: "Received chunks whose SHA-256 matched and that were stored.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_chunks_rejected_total",
			Help: "Received chunks that failed verification and were discarded.",
		}),
		bans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_peer_bans_total",
			Help: "Peers banned, by reason.",
		}, []string{"reason"}),
		penalties: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_peer_penalties_total",
			Help: "Protocol violations by peers, by reason.",
		}, []string{"reason"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2pd_peer_connections",
			Help: "Peers with an open chunk protocol stream.",
		}),
		announces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_peer_announces_total",
			Help: "Announces sent to the tracker, by result (ok, need_full, stopped, error).",
		}, []string{"result"}),
		rateDelay: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_peer_rate_limit_delay_seconds_total",
			Help: "Time the per-peer rate limits held transfers back, by direction.",
		}, []string{"direction"}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_upload_busy_total",
			Help: "Chunk requests refused (Reject Busy) because every upload slot was taken.",
		}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_upload_deferred_total",
			Help: "Chunk requests refused (Reject Deferred) because the chunk was sent to another peer within the resend window.",
		}),
		escalated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_upload_escalated_total",
			Help: "Chunk requests served within the resend window (or the first round) of sending the chunk to another peer because the requester marked them escalated (the peers that have it failed it or look stalled).",
		}),
		hoarder: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_upload_hoarder_deferred_total",
			Help: "Chunk requests refused (Reject Deferred) while other uploads were running because the requester hoards: a chunk sent to it was later asked for in an escalated request, as its holders had not passed it on.",
		}),
		unacked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_upload_unacked_total",
			Help: "Upload slots freed without the requester's Received, 30 s after the upload's last byte was written (an uploader holds a slot until the requester says the data arrived).",
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_peer_request_timeouts_total",
			Help: "Chunk requests cancelled because the peer stalled: it sent nothing towards its oldest request for the request timeout.",
		}),
		dialFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_peer_dial_failures_total",
			Help: "Dials to peers that did not end in a session, by stage: connect (TCP, TLS, yamux, or the libp2p dial backoff after an earlier failure) or handshake (the chunk protocol's Hello).",
		}, []string{"stage"}),
		pullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2pd_peer_pull_duration_seconds",
			Help:    "Duration of successful downloads, manifest lookup and verification included.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 16),
		}),
		pullChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_peer_pulls_verified_total",
			Help: "Completed pulls by how the blob was bound to its digest: manifest (the origins vouched for the manifest via the tracker) or blob (read back and hashed whole).",
		}, []string{"by"}),
	}
	m.dlPeer = m.downloaded.WithLabelValues(sourcePeer)
	m.dlOrigin = m.downloaded.WithLabelValues(sourceOrigin)
	m.upDelay = m.rateDelay.WithLabelValues(dirUpload)
	m.downDelay = m.rateDelay.WithLabelValues(dirDownload)
	for _, st := range []string{dialConnect, dialHandshake} {
		m.dialFails.WithLabelValues(st)
	}
	for _, r := range []string{reasonCorrupt, reasonProtocol, reasonManifest} {
		m.bans.WithLabelValues(r)
		m.penalties.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{
		m.downloaded, m.uploaded, m.verified, m.rejected, m.bans, m.penalties,
		m.conns, m.announces, m.rateDelay, m.busy, m.deferred, m.escalated, m.hoarder, m.unacked, m.timeouts, m.dialFails, m.pullDuration, m.pullChecks,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("peer: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) addDownloaded(n int, origin bool) {
	if origin {
		m.dlOrigin.Add(float64(n))
		m.nOrigin.Add(uint64(n))
	} else {
		m.dlPeer.Add(float64(n))
		m.nPeer.Add(uint64(n))
	}
}

func (m *metrics) addUploaded(n int) {
	m.uploaded.Add(float64(n))
	m.nUploaded.Add(uint64(n))
}

func (m *metrics) chunkVerified()   { m.verified.Inc(); m.nVerified.Add(1) }
func (m *metrics) chunkRejected()   { m.rejected.Inc(); m.nRejected.Add(1) }
func (m *metrics) uploadBusy()      { m.busy.Inc(); m.nBusy.Add(1) }
func (m *metrics) uploadDeferred()  { m.deferred.Inc(); m.nDeferred.Add(1) }
func (m *metrics) uploadEscalated() { m.escalated.Inc(); m.nEscalated.Add(1) }
func (m *metrics) uploadHoarder()   { m.hoarder.Inc(); m.nHoarder.Add(1) }
func (m *metrics) uploadUnacked()   { m.unacked.Inc(); m.nUnacked.Add(1) }
func (m *metrics) requestTimeout()  { m.timeouts.Inc(); m.nTimeouts.Add(1) }

// dialFailed counts a failed dial at stage dialConnect or dialHandshake.
func (m *metrics) dialFailed(stage string) {
	m.dialFails.WithLabelValues(stage).Inc()
	m.nDialFails.Add(1)
}

// pullVerified counts a pull bound to its digest by "manifest" or "blob".
func (m *metrics) pullVerified(by string) { m.pullChecks.WithLabelValues(by).Inc() }

func (m *metrics) ban(reason string) {
	m.bans.WithLabelValues(reason).Inc()
	m.nBans.Add(1)
}

func (m *metrics) penalty(reason string) {
	m.penalties.WithLabelValues(reason).Inc()
	m.nPenalties.Add(1)
}

func (m *metrics) connDelta(d int) {
	m.conns.Add(float64(d))
	m.nConns.Add(int64(d))
}

func (m *metrics) rateDelayed(dir string, d time.Duration) {
	if d <= 0 {
		return
	}
	if dir == dirUpload {
		m.upDelay.Add(d.Seconds())
		m.nUpDelay.Add(int64(d))
	} else {
		m.downDelay.Add(d.Seconds())
		m.nDownDelay.Add(int64(d))
	}
}

func (m *metrics) stats() Stats {
	return Stats{
		BytesUploaded:     m.nUploaded.Load(),
		BytesFromPeers:    m.nPeer.Load(),
		BytesFromOrigins:  m.nOrigin.Load(),
		ChunksVerified:    m.nVerified.Load(),
		ChunksRejected:    m.nRejected.Load(),
		Bans:              m.nBans.Load(),
		Penalties:         m.nPenalties.Load(),
		UploadBusy:        m.nBusy.Load(),
		UploadDeferred:    m.nDeferred.Load(),
		UploadEscalated:   m.nEscalated.Load(),
		UploadHoarder:     m.nHoarder.Load(),
		UploadUnacked:     m.nUnacked.Load(),
		RequestTimeouts:   m.nTimeouts.Load(),
		DialFailures:      m.nDialFails.Load(),
		UploadRateDelay:   time.Duration(m.nUpDelay.Load()),
		DownloadRateDelay: time.Duration(m.nDownDelay.Load()),
		Connections:       int(m.nConns.Load()),
	}
}

// countingTracker counts the results of the announces sent through it.
type countingTracker struct {
	Tracker
	m *metrics
}

func (c countingTracker) Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
	resp, err := c.Tracker.Announce(ctx, req)
	result := "ok"
	switch {
	case err != nil && errors.Is(err, trackerclient.ErrConflict):
		result = "conflict"
	case err != nil:
		result = "error"
	case req.Event == trackerwire.EventStopped:
		result = "stopped"
	case resp.NeedFull:
		result = "need_full"
	}
	c.m.announces.WithLabelValues(result).Inc()
	return resp, err
}
