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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
