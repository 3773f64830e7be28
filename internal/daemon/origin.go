package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/upstream"
	"github.com/p2pd/p2pd/peer"
)

// DefaultOriginListen is where an origin's push API listens by default.
const DefaultOriginListen = "127.0.0.1:7401"

// OriginConfig is the YAML configuration of `p2pd origin`.
type OriginConfig struct {
	NodeConfig `yaml:",inline"`
	// Listen is the push API's HTTP address (also /metrics).
	Listen string        `yaml:"listen"`
	Origin origin.Config `yaml:"origin"`
	// Upstream is the container registries the origin pulls images from
	// for the peers' registry mirrors (none by default).
	Upstream upstream.Config `yaml:"upstream"`
}

// WithDefaults fills zero fields.
func (c OriginConfig) WithDefaults() OriginConfig {
	c.NodeConfig = c.NodeConfig.withDefaults(trackerwire.RoleOrigin)
	if c.Listen == "" {
		c.Listen = DefaultOriginListen
	}
	c.Origin = c.Origin.WithDefaults()
	return c
}

// Validate reports why c cannot run.
func (c OriginConfig) Validate() error {
	return errors.Join(c.NodeConfig.validate(), c.Origin.Validate(), c.Upstream.Validate())
}

// RunOrigin starts an origin: the push API on Addrs["http"], and a peer
// engine with role origin that seeds every stored blob (again after a
// restart) over the same peer protocol as the peers, on Addrs["p2p"].
func RunOrigin(ctx context.Context, cfg OriginConfig, lg *slog.Logger) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	lg = lg.With("role", "origin")
	cr, err := loadSecurity("origin", cfg.Security)
	if err != nil {
		return nil, err
	}
	ln, scheme, err := listenAPI("origin", cfg.Listen, cr)
	if err != nil {
		return nil, err
	}
	es, err := startEngine(ctx, cfg.NodeConfig, cr, lg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	deps := origin.Deps{Store: es.store, Seeder: seeder{es.engine}, Logger: lg, Registry: es.reg, Gatherer: es.reg, Auth: cr.Verifier()}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(cfg.Upstream.Registries) > 0 {
		up, err := upstream.New(cfg.Upstream, upstream.Deps{Transport: tr, Logger: lg.With("component", "upstream")})
		if err != nil {
			ln.Close()
			return nil, errors.Join(err, es.close(ctx))
		}
		deps.Upstream = up
	}
	srv, err := origin.New(cfg.Origin, deps)
	if err != nil {
		ln.Close()
		return nil, errors.Join(err, es.close(ctx))
	}
	ctx, cancel := context.WithCancel(ctx)
	n := newNode("origin", cancel)
	n.Scheme = scheme
	n.Addrs["http"] = ln.Addr().String()
	n.Addrs["p2p"] = es.engine.Addrs()[0]
	n.run(ctx, func(ctx context.Context) error {
		err := srv.Serve(ctx, ln)
		tr.CloseIdleConnections()
		return errors.Join(err, es.close(ctx))
	})
	return n, nil
}

// seeder lets the origin hand pushed blobs to the engine, and stop seeding
// deleted ones.
type seeder struct{ e *peer.Engine }

func (s seeder) Seed(ctx context.Context, m *chunker.Manifest) error { return s.e.Seed(ctx, m) }

func (s seeder) Unseed(ctx context.Context, d chunker.Digest) error {
	if err := s.e.Remove(ctx, d); err != nil && !errors.Is(err, peer.ErrNotFound) {
		return err
	}
	return nil
}
