// Command p2pd is the p2pd daemon: one binary whose subcommands are the
// roles (tracker, origin, peer, dev). All of it lives in package cli and
// internal/daemon; main only wires signals and the exit code.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/p2pd/p2pd/cmd/p2pd/cli"
)

func main() { os.Exit(run(os.Args[1:])) }

// run is p2pd short of os.Exit: SIGINT and SIGTERM cancel the context,
// which stops the role gracefully, and the result is the exit code. The
// shutdown tests run the test binary as p2pd through it.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Main(ctx, args, os.Stdout, os.Stderr)
}
