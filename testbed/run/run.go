// Package run runs a testbed scenario in the mode it names and then its
// baselines on the same links, and returns one result.Result with the
// baselines attached. `p2pctl testbed run` is a thin layer over it.
package run

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/p2pd/p2pd/testbed/emu"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
	"github.com/p2pd/p2pd/testbed/sim"
)

// Options tune a run.
type Options struct {
	// Dir is where emulated nodes keep their data (default: fleet.DefaultDir).
	Dir string
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
	// Progress receives the main run's samples.
	Progress result.Progress
	// Stage, if set, is told which run starts ("emu", "origin-only", ...).
	Stage func(name string)
	// P2PD is the p2pd binary netns mode runs (default: built from the
	// module in the working directory).
	P2PD string
}

// Run runs s, then each of s.Baselines.
func Run(ctx context.Context, s scenario.Scenario, o Options) (*result.Result, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	stage := func(name string) {
		if o.Stage != nil {
			o.Stage(name)
		}
	}
	stage(string(s.Mode))
	var (
		r   *result.Result
		err error
	)
	switch s.Mode {
	case scenario.ModeEmu:
		// Every completed copy is read back and hashed after the run, as in
		// netns mode: a corrupt byte accepted would fail its peer.
		r, err = emu.Run(ctx, s, emu.Options{Dir: o.Dir, Logger: o.Logger, Progress: o.Progress, Verify: true})
	case scenario.ModeSim:
		r, err = sim.Run(ctx, s, o.Progress)
	case scenario.ModeNetns:
		r, err = runNetns(ctx, s, o)
	default:
		err = fmt.Errorf("%w: mode %q", scenario.ErrInvalid, s.Mode)
	}
	if err != nil {
		return nil, fmt.Errorf("%s run: %w", s.Mode, err)
	}
	for _, name := range s.Baselines {
		stage(name)
		b, err := runBaseline(ctx, name, s, o)
		if err != nil {
			return r, fmt.Errorf("baseline %s: %w", name, err)
		}
		r.Baselines = append(r.Baselines, b)
	}
	return r, nil
}
