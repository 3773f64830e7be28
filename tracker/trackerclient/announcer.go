package trackerclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// AnnounceClient sends announces; *Client is one.
type AnnounceClient interface {
	Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error)
}

// Identity is what an Announcer announces as.
type Identity struct {
	Blob   chunker.Digest
	PeerID string
	Role   trackerwire.Role
	Zone   string
	Rack   string
	// Manifest is the blob's manifest ID, announced by origins only (see
	// trackerwire.AnnounceRequest.Manifest).
	Manifest chunker.Digest
}

// State is a peer's current state for the blob, supplied by the caller
// before each announce. Bitfield is the full bitmap of held chunks (it may
// be nil if Complete); the Announcer works out the delta itself.
type State struct {
	Addrs                 []string
	NumChunks             uint32
	Bitfield              trackerwire.Bitfield
	Complete              bool
	Uploaded              uint64
	Downloaded            uint64
	DownloadedFromOrigins uint64
	// NumWant, if set, is the most peers to ask the tracker for (see
	// trackerwire.AnnounceRequest.NumWant): 0 for a peer that would not
	// dial any it was handed. Nil asks for the tracker's default.
	NumWant *int
}

// AnnouncerConfig tunes an Announcer. The zero value means the defaults.
type AnnouncerConfig struct {
	// DefaultInterval is used until the tracker names one (default 5s).
	DefaultInterval time.Duration `yaml:"default_interval"`
	// MinInterval and MaxInterval clamp the tracker's interval (defaults
	// 1s and 5m).
	MinInterval time.Duration `yaml:"min_interval"`
	MaxInterval time.Duration `yaml:"max_interval"`
	// Jitter spreads announces: each wait is the interval times a random
	// factor in [1-Jitter, 1+Jitter] (default 0.1; negative means none).
	Jitter float64 `yaml:"jitter"`
	// BackoffMin and BackoffMax bound the exponential backoff after
	// failed announces (defaults 1s and 1m).
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// StopTimeout bounds the final "stopped" announce (default 5s).
	StopTimeout time.Duration `yaml:"stop_timeout"`
}

// ErrBadConfig wraps the errors of AnnouncerConfig.Validate and
// NewAnnouncer.
var ErrBadConfig = errors.New("trackerclient: invalid announcer config")

// WithDefaults returns c with zero fields replaced by their defaults.
func (c AnnouncerConfig) WithDefaults() AnnouncerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DefaultInterval, 5*time.Second)
	def(&c.MinInterval, time.Second)
	def(&c.MaxInterval, 5*time.Minute)
	def(&c.BackoffMin, time.Second)
	def(&c.BackoffMax, time.Minute)
	def(&c.StopTimeout, 5*time.Second)
	if c.Jitter == 0 {
		c.Jitter = 0.1
	}
	return c
}

// Validate reports why c (after defaults) is unusable.
func (c AnnouncerConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.MinInterval <= 0 || c.MinInterval > c.MaxInterval:
		return fmt.Errorf("%w: need 0 < min_interval <= max_interval, have %v, %v", ErrBadConfig, c.MinInterval, c.MaxInterval)
	case c.DefaultInterval < c.MinInterval || c.DefaultInterval > c.MaxInterval:
		return fmt.Errorf("%w: default_interval %v is outside min..max interval", ErrBadConfig, c.DefaultInterval)
	case c.BackoffMin <= 0 || c.BackoffMin > c.BackoffMax:
		return fmt.Errorf("%w: need 0 < backoff_min <= backoff_max, have %v, %v", ErrBadConfig, c.BackoffMin, c.BackoffMax)
	case c.Jitter >= 1 || c.Jitter != c.Jitter:
		return fmt.Errorf("%w: jitter %v must be below 1", ErrBadConfig, c.Jitter)
	case c.StopTimeout < 0:
		return fmt.Errorf("%w: stop_timeout %v is negative", ErrBadConfig, c.StopTimeout)
	}
	return nil
}

// AnnouncerDeps are an Announcer's collaborators.
type AnnouncerDeps struct {
	// Client sends the announces. Required.
	Client AnnounceClient
	// State returns the current state before each announce. Required.
	State func(ctx context.Context) (State, error)
	// OnResponse, if set, receives each successful answer that hands out
	// peers (not the NeedFull ones), on the Announcer's goroutine.
	OnResponse func(ctx context.Context, resp *trackerwire.AnnounceResponse)
	// Clock schedules the announces (default clock.Real()).
	Clock clock.Clock
	// Logger receives the Announcer's logs (default: discarded).
	Logger *slog.Logger
	// Rand draws jitter (default: randomly seeded). It is used only by
	// Run's goroutine.
	Rand *rand.Rand
}

// Announcer keeps one peer's record for one blob alive on a tracker: it
// announces every interval the tracker asks for (with jitter), sends the
// chunks gained since the last acknowledged announce as a delta, sends the
// full bitfield when the tracker answers NeedFull (after a tracker
// restart) or when chunks were lost, backs off exponentially on errors
// (never beyond the tracker's interval once it named one), and
// announces "stopped" when it ends.
type Announcer struct {
	id      Identity
	cfg     AnnouncerConfig
	deps    AnnouncerDeps
	clock   clock.Clock
	log     *slog.Logger
	rng     *rand.Rand
	trigger chan struct{}
}

// NewAnnouncer returns an Announcer; start it with Run.
func NewAnnouncer(id Identity, cfg AnnouncerConfig, deps AnnouncerDeps) (*Announcer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Client == nil || deps.State == nil {
		return nil, fmt.Errorf("%w: Client and State are required", ErrBadConfig)
	}
	if id.Blob.IsZero() || id.PeerID == "" || !id.Role.Valid() {
		return nil, fmt.Errorf("%w: identity needs a blob, a peer ID and a role", ErrBadConfig)
	}
	a := &Announcer{id: id, cfg: cfg, deps: deps, clock: deps.Clock, log: deps.Logger, rng: deps.Rand, trigger: make(chan struct{}, 1)}
	if a.clock == nil {
		a.clock = clock.Real()
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.rng == nil {
		a.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	a.log = a.log.With("blob", id.Blob, "tracker_role", id.Role)
	return a, nil
}

// Trigger asks for an announce as soon as possible (for example when the
// download completes), without waiting for the interval. It does not
// block.
func (a *Announcer) Trigger() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// maxQuickNeedFull is how many NeedFull answers in a row are followed at
// once; after that the Announcer backs off.
const maxQuickNeedFull = 3

// Run announces until ctx ends, then sends a "stopped" announce (if any
// announce succeeded) bounded by StopTimeout, and returns nil. Run must
// not be called twice at once.
func (a *Announcer) Run(ctx context.Context) error {
	var (
		acked         trackerwire.Bitfield // what the tracker holds; nil: unknown
		ackedComplete bool
		started       bool
		failures      int
		needFulls     int
		last          State
		// interval is the tracker's last named interval (0: none yet).
		// Backoff never waits longer: a tracker that restarted empty gets
		// every record back within one interval of coming up.
		interval time.Duration
	)
	for {
		var wait time.Duration
		st, err := a.deps.State(ctx)
		var req *trackerwire.AnnounceRequest
		var resp *trackerwire.AnnounceResponse
		if err == nil {
			last = st
			req = a.request(st, acked, ackedComplete, started)
			resp, err = a.deps.Client.Announce(ctx, req)
		} else {
			err = fmt.Errorf("trackerclient: state: %w", err)
		}
		if ctx.Err() != nil {
			break
		}
		switch {
		case err != nil:
			failures++
			wait = a.backoff(failures)
			if interval > 0 {
				wait = min(wait, a.jitter(interval))
			}
			level := slog.LevelDebug
			if failures == 1 || errors.Is(err, ErrBadRequest) || errors.Is(err, ErrConflict) {
				level = slog.LevelWarn
			}
			a.log.Log(ctx, level, "announce failed", "err", err, "failures", failures, "retry_in", wait)
		case resp.NeedFull:
			failures, started = 0, true
			acked, ackedComplete = nil, false
			if needFulls++; needFulls > maxQuickNeedFull {
				wait = a.backoff(needFulls - maxQuickNeedFull)
			}
			a.log.Debug("tracker asked for the full bitfield", "retry_in", wait)
		default:
			failures, needFulls, started = 0, 0, true
			if st.Complete {
				acked, ackedComplete = trackerwire.FullBitfield(st.NumChunks), true
			} else {
				acked, ackedComplete = st.Bitfield.Clone(), false
			}
			if a.deps.OnResponse != nil {
				a.deps.OnResponse(ctx, resp)
			}
			interval = a.interval(resp)
			wait = a.jitter(interval)
		}
		if !a.sleep(ctx, wait) {
			break
		}
	}
	if started {
		a.stop(ctx, last)
	}
	return nil
}

// request builds the announce for st given what the tracker holds.
func (a *Announcer) request(st State, acked trackerwire.Bitfield, ackedComplete, started bool) *trackerwire.AnnounceRequest {
	req := &trackerwire.AnnounceRequest{
		Blob: a.id.Blob, PeerID: a.id.PeerID, Role: a.id.Role, Zone: a.id.Zone, Rack: a.id.Rack,
		Addrs: st.Addrs, NumChunks: st.NumChunks, Complete: st.Complete,
		Uploaded: st.Uploaded, Downloaded: st.Downloaded, DownloadedFromOrigins: st.DownloadedFromOrigins,
		Manifest: a.id.Manifest, NumWant: st.NumWant,
	}
	switch {
	case !started:
		req.Event = trackerwire.EventStarted
	case st.Complete && !ackedComplete:
		req.Event = trackerwire.EventCompleted
	}
	if st.Complete {
		return req // complete implies every chunk
	}
	if added, ok := deltaOf(acked, st.Bitfield); ok {
		req.Delta = &trackerwire.Delta{Added: added}
	} else {
		req.Bitfield = st.Bitfield
	}
	return req
}

// deltaOf returns the indexes set in cur and not in acked, or ok=false if
// a full bitfield is needed: acked unknown or of another size, bits lost,
// or a delta no smaller than the bitfield.
func deltaOf(acked, cur trackerwire.Bitfield) (added []uint32, ok bool) {
	if acked == nil || len(acked) != len(cur) {
		return nil, false
	}
	n := 0
	for i := range cur {
		if acked[i]&^cur[i] != 0 {
			return nil, false // lost chunks
		}
		n += bits.OnesCount8(cur[i] &^ acked[i])
	}
	// A full bitfield is about 4/3 of len(cur) bytes in base64; an index
	// costs up to 8 bytes of JSON.
	if n > trackerwire.MaxDeltaAdded || 8*n > 4*len(cur)/3+8 {
		return nil, false
	}
	added = make([]uint32, 0, n)
	for i := range cur {
		for x := cur[i] &^ acked[i]; x != 0; x &= x - 1 {
			added = append(added, uint32(8*i+bits.LeadingZeros8(x&-x)))
		}
	}
	return added, true
}

// interval returns the tracker's interval, clamped, or the default.
func (a *Announcer) interval(resp *trackerwire.AnnounceResponse) time.Duration {
	if resp.Interval <= 0 {
		return a.cfg.DefaultInterval
	}
	d := resp.IntervalDuration()
	if resp.Interval > int64(a.cfg.MaxInterval/time.Second) {
		d = a.cfg.MaxInterval
	}
	return min(max(d, a.cfg.MinInterval), a.cfg.MaxInterval)
}

// jitter returns d scaled by a random factor in [1-Jitter, 1+Jitter].
func (a *Announcer) jitter(d time.Duration) time.Duration {
	if a.cfg.Jitter <= 0 {
		return d
	}
	f := 1 + a.cfg.Jitter*(2*a.rng.Float64()-1)
	return time.Duration(float64(d) * f)
}

// backoff returns the wait after the n-th failure in a row: BackoffMin
// doubled n-1 times, capped at BackoffMax, then drawn uniformly from its
// upper half.
func (a *Announcer) backoff(n int) time.Duration {
	d := a.cfg.BackoffMax
	if n-1 < 32 {
		if b := a.cfg.BackoffMin << (n - 1); b > 0 && b < d {
			d = b
		}
	}
	return d/2 + time.Duration(a.rng.Int64N(int64(d/2)+1))
}

// sleep waits d, or less if triggered; it reports false if ctx ended.
func (a *Announcer) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := a.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-a.trigger:
	}
	return true
}

// stop sends the "stopped" announce, on a context that outlives ctx by
// at most StopTimeout.
func (a *Announcer) stop(ctx context.Context, last State) {
	if a.cfg.StopTimeout <= 0 {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.StopTimeout)
	defer cancel()
	req := &trackerwire.AnnounceRequest{
		Blob: a.id.Blob, PeerID: a.id.PeerID, Role: a.id.Role, Zone: a.id.Zone, Rack: a.id.Rack,
		NumChunks: max(last.NumChunks, 1), Event: trackerwire.EventStopped,
		Uploaded: last.Uploaded, Downloaded: last.Downloaded, DownloadedFromOrigins: last.DownloadedFromOrigins,
	}
	if _, err := a.deps.Client.Announce(sctx, req); err != nil {
		a.log.Debug("stopped announce failed", "err", err)
	}
}
