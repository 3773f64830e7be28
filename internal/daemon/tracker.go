package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/tracker"
)

// DefaultTrackerListen is where a tracker listens unless told otherwise.
const DefaultTrackerListen = "127.0.0.1:7400"

// TrackerConfig is the YAML configuration of `p2pd tracker`.
type TrackerConfig struct {
	// Listen is the HTTP API's address; port 0 picks a free port.
	Listen  string         `yaml:"listen"`
	Tracker tracker.Config `yaml:"tracker"`
	Log     LogConfig      `yaml:"log"`
	// Security: with announce_token_file, only signed announces and reads
	// are served (admin_token_file lets admins read too); with cert_file
	// and key_file, the API serves TLS.
	Security auth.Config `yaml:"security"`
}

// WithDefaults fills zero fields.
func (c TrackerConfig) WithDefaults() TrackerConfig {
	if c.Listen == "" {
		c.Listen = DefaultTrackerListen
	}
	c.Tracker = c.Tracker.WithDefaults()
	return c
}

// Validate reports why c cannot run.
func (c TrackerConfig) Validate() error {
	return errors.Join(c.Tracker.Validate(), c.Log.Validate(), c.Security.Validate())
}

// RunTracker starts a tracker and returns once it is listening. Its
// address is Node.Addrs["http"].
func RunTracker(ctx context.Context, cfg TrackerConfig, lg *slog.Logger) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg = lg.With("role", "tracker")
	cr, err := loadSecurity("tracker", cfg.Security)
	if err != nil {
		return nil, err
	}
	reg := newRegistry()
	srv, err := tracker.New(cfg.Tracker, tracker.Deps{Logger: lg, Registry: reg, Gatherer: reg, Auth: cr.Verifier()})
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	ln, scheme, err := listenAPI("tracker", cfg.Listen, cr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	n := newNode("tracker", cancel)
	n.Scheme = scheme
	n.Addrs["http"] = ln.Addr().String()
	n.run(ctx, func(ctx context.Context) error { return srv.Serve(ctx, ln) })
	return n, nil
}
