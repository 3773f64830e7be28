// Package cli implements the p2pctl commands. Each command is built by a
// newXxxCmd function from the shared globals; Main runs one and maps its
// error to a documented exit code.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/config"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Exit codes. They are part of the interface: scripts rely on them.
const (
	ExitOK       = 0   // success
	ExitError    = 1   // any other failure (I/O, environment)
	ExitUsage    = 2   // bad flags or arguments, invalid config
	ExitMismatch = 3   // data does not match its manifest or digest
	ExitBadInput = 4   // a manifest or other input is corrupt or inconsistent
	ExitNotFound = 5   // the blob is unknown to the daemon, tracker or origin
	ExitDenied   = 6   // the tracker or origin refused the credentials
	ExitCanceled = 130 // interrupted
)

const exitCodesHelp = `Exit codes:
  0    success
  1    failure (I/O error, environment)
  2    usage error: bad flags, arguments or config file
  3    verification failed: data does not match the manifest
  4    bad input: corrupt, truncated or inconsistent manifest
  5    not found: no daemon, tracker or origin knows the blob
  6    denied: the tracker or origin refused the token (missing, wrong, stale)
  130  interrupted`

// Config is the p2pctl configuration file (--config), YAML.
type Config struct {
	// Tracker is the tracker's base URL (default http://127.0.0.1:7400).
	Tracker string `yaml:"tracker"`
	// Origin is the origin's base URL (default http://127.0.0.1:7401).
	Origin string `yaml:"origin"`
	// Peer is the local peer daemon's control address: host:port on
	// loopback or unix:/path (default 127.0.0.1:7402).
	Peer string `yaml:"peer"`
	// Credentials is a directory p2pd init wrote: the tokens and CA it
	// holds are used unless given otherwise.
	Credentials string `yaml:"credentials"`
	// PushToken signs pushes to the origin; AdminToken reads from the
	// tracker and deletes from the origin.
	PushToken  string `yaml:"push_token"`
	AdminToken string `yaml:"admin_token"`
	// CAFile is trusted for https:// trackers and origins.
	CAFile  string         `yaml:"ca_file"`
	Chunker chunker.Config `yaml:"chunker"`
}

// Environment variables, between the config file and the flags.
const (
	EnvCredentials = "P2PD_CREDENTIALS"
	EnvPushToken   = "P2PD_PUSH_TOKEN"
	EnvAdminToken  = "P2PD_ADMIN_TOKEN"
	EnvCAFile      = "P2PD_CA_FILE"
)

// Defaults matching p2pd's default listeners (and p2pd dev's).
const (
	DefaultTracker = "http://127.0.0.1:7400"
	DefaultOrigin  = "http://127.0.0.1:7401"
	DefaultPeer    = "127.0.0.1:7402"
)

// globals are the options every command shares.
type globals struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	json           bool
	quiet          bool
	configPath     string
	cfg            Config
	// chunker size flags, as strings so they accept units
	minSize, avgSize, maxSize string
	// endpoints; empty means the config file's value, then the default
	tracker, origin, peer string
	// credentials; empty means the environment's, then the config file's
	credentials, pushToken, adminToken, caFile string
	// creds are the loaded credentials (tokens and CA)
	creds *auth.Credentials
}

// usageError marks errors that come from how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// Main runs p2pctl with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	if g.json && code != ExitUsage {
		json.NewEncoder(stdout).Encode(map[string]any{"error": err.Error(), "exit_code": code})
	} else {
		fmt.Fprintln(stderr, "p2pctl:", err)
	}
	return code
}

func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, config.ErrInvalid), errors.Is(err, chunker.ErrBadConfig):
		return ExitUsage
	case errors.Is(err, originclient.ErrUnauthorized), errors.Is(err, trackerclient.ErrUnauthorized):
		return ExitDenied
	case errors.Is(err, originclient.ErrDigestMismatch):
		return ExitMismatch
	case errors.Is(err, controlclient.ErrNotFound), errors.Is(err, trackerclient.ErrNotFound), errors.Is(err, originclient.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, context.Canceled):
		return ExitCanceled
	case errors.Is(err, chunker.ErrDigestMismatch), errors.Is(err, chunker.ErrSizeMismatch):
		return ExitMismatch
	case errors.Is(err, chunker.ErrManifestCorrupt), errors.Is(err, chunker.ErrManifestInconsistent),
		errors.Is(err, chunker.ErrManifestTooLarge), errors.Is(err, chunker.ErrUnsupportedVersion):
		return ExitBadInput
	}
	return ExitError
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "p2pctl",
		Short: "Operate p2pd: chunk and verify blobs, and benchmark the system",
		Long: `p2pctl is the operator CLI for p2pd, the peer-to-peer system that sends large
blobs (database backups, container images, model files) to fleets of servers.

Blobs are split into content-defined chunks (FastCDC, SHA-256 per chunk) and
described by a manifest. The blob's ID is the SHA-256 of its bytes in OCI form,
sha256:<hex>.

Every command takes --json for machine-readable output. Progress bars appear on
a terminal only.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.load()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON on stdout")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "no progress bars")
	pf.StringVar(&g.configPath, "config", "", "YAML config file; flags override it")
	pf.StringVar(&g.minSize, "min-size", "", "minimum chunk size, e.g. 256KiB (default 256KiB)")
	pf.StringVar(&g.avgSize, "avg-size", "", "average chunk size, a power of two (default 1MiB)")
	pf.StringVar(&g.maxSize, "max-size", "", "maximum chunk size (default 4MiB)")
	pf.StringVar(&g.tracker, "tracker", "", "tracker URL (default "+DefaultTracker+")")
	pf.StringVar(&g.origin, "origin", "", "origin URL (default "+DefaultOrigin+")")
	pf.StringVar(&g.peer, "peer", "", "local peer control address, host:port or unix:/path (default "+DefaultPeer+")")
	pf.StringVar(&g.credentials, "credentials", "", "directory written by p2pd init (or p2pd dev): its tokens and CA (default $"+EnvCredentials+", then config credentials)")
	pf.StringVar(&g.pushToken, "push-token", "", "token that signs pushes (default $"+EnvPushToken+", config push_token, then --credentials)")
	pf.StringVar(&g.adminToken, "admin-token", "", "token that signs tracker reads and origin deletes (default $"+EnvAdminToken+", config admin_token, then --credentials)")
	pf.StringVar(&g.caFile, "ca-file", "", "CA certificate to trust for https:// trackers and origins (default $"+EnvCAFile+", config ca_file, then --credentials)")
	root.AddCommand(newChunkCmd(g), newVerifyCmd(g), newBenchCmd(g),
		newPushCmd(g), newPullCmd(g), newLsCmd(g), newRmCmd(g), newStatusCmd(g), newTestbedCmd(g), newImageCmd(g))
	return root
}

// load applies defaults < config file < flags.
func (g *globals) load() error {
	if err := config.LoadFile(g.configPath, &g.cfg); err != nil {
		return err
	}
	for _, e := range []struct {
		flag, def string
		dst       *string
	}{
		{g.tracker, DefaultTracker, &g.cfg.Tracker}, {g.origin, DefaultOrigin, &g.cfg.Origin}, {g.peer, DefaultPeer, &g.cfg.Peer},
	} {
		if e.flag != "" {
			*e.dst = e.flag
		}
		if *e.dst == "" {
			*e.dst = e.def
		}
	}
	for _, f := range []struct {
		flag string
		dst  *int
	}{{g.minSize, &g.cfg.Chunker.MinSize}, {g.avgSize, &g.cfg.Chunker.AvgSize}, {g.maxSize, &g.cfg.Chunker.MaxSize}} {
		if f.flag == "" {
			continue
		}
		n, err := units.ParseSize(f.flag)
		if err != nil {
			return usageError{err}
		}
		*f.dst = int(n)
	}
	return g.cfg.Chunker.Validate()
}

func (g *globals) chunker() (*chunker.Chunker, error) { return chunker.New(g.cfg.Chunker) }

// loadCredentials applies config < environment < flags to the
// credentials, fills what is still missing from the credentials
// directory, and loads them. Only the commands that reach the tracker or
// the origin call it (through originClient and trackerClient).
func (g *globals) loadCredentials() error {
	if g.creds != nil {
		return nil
	}
	for _, c := range []struct {
		flag, env string
		dst       *string
	}{
		{g.credentials, EnvCredentials, &g.cfg.Credentials}, {g.pushToken, EnvPushToken, &g.cfg.PushToken},
		{g.adminToken, EnvAdminToken, &g.cfg.AdminToken}, {g.caFile, EnvCAFile, &g.cfg.CAFile},
	} {
		if v := os.Getenv(c.env); v != "" {
			*c.dst = v
		}
		if c.flag != "" {
			*c.dst = c.flag
		}
	}
	var sec auth.Config
	if g.cfg.Credentials != "" {
		var err error
		if sec, err = auth.DirConfig(g.cfg.Credentials); err != nil {
			return usageError{err}
		}
	}
	if g.cfg.CAFile != "" {
		sec.CAFile = g.cfg.CAFile
	}
	sec.PSKFile, sec.AnnounceTokenFile, sec.CertFile, sec.KeyFile = "", "", "", "" // not p2pctl's
	if g.cfg.PushToken != "" {
		sec.PushTokenFile = ""
	}
	if g.cfg.AdminToken != "" {
		sec.AdminTokenFile = ""
	}
	cr, err := sec.Load()
	if err != nil {
		return usageError{err}
	}
	for _, t := range []struct {
		v   string
		dst *string
	}{{g.cfg.PushToken, &cr.Keys.Push}, {g.cfg.AdminToken, &cr.Keys.Admin}} {
		if t.v == "" {
			continue
		}
		if *t.dst, err = auth.ParseToken(t.v); err != nil {
			return usageError{err}
		}
	}
	g.creds = cr
	return nil
}

// originClient returns a client of the origin whose requests are signed
// with the token of scope, if p2pctl has one.
func (g *globals) originClient(scope auth.Scope) (*originclient.Client, error) {
	if err := g.loadCredentials(); err != nil {
		return nil, err
	}
	c, err := originclient.New(g.cfg.Origin, originclient.WithHTTPClient(g.creds.Client(scope, 0)))
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// trackerClient returns a client of the tracker whose requests are signed
// with the admin token, if p2pctl has one.
func (g *globals) trackerClient() (*trackerclient.Client, error) {
	if err := g.loadCredentials(); err != nil {
		return nil, err
	}
	c, err := trackerclient.New(g.cfg.Tracker, trackerclient.WithHTTPClient(g.creds.Client(auth.ScopeAdmin, trackerclient.DefaultTimeout)))
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// printJSON writes v as indented JSON on stdout.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
