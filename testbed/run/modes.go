package run

import (
	"context"

	"github.com/p2pd/p2pd/testbed/baseline"
	"github.com/p2pd/p2pd/testbed/netns"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

func runNetns(ctx context.Context, s scenario.Scenario, o Options) (*result.Result, error) {
	for _, w := range netns.Warnings(s) {
		o.Logger.Warn(w)
	}
	return netns.Run(ctx, s, netns.Options{P2PD: o.P2PD, Dir: o.Dir, Logger: o.Logger, Progress: o.Progress, Verify: true})
}

func runBaseline(ctx context.Context, name string, s scenario.Scenario, o Options) (*result.Result, error) {
	return baseline.Run(ctx, name, s, baseline.Options{Dir: o.Dir, Logger: o.Logger, Progress: o.Progress})
}
