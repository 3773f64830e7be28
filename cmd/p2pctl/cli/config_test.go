package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/config"
)

// FuzzConfig decodes p2pctl's config file (--config) as load does:
// nothing panics, and a file that decodes gets an answer from Validate.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("tracker: https://tracker:7400\norigin: https://origin:7401\npeer: unix:/run/p2pd.sock\ncredentials: /etc/p2pd\n"))
	f.Add([]byte("push_token: p2pd_abcdefghijklmnop\nadmin_token: x\nca_file: /etc/p2pd/ca.crt\nchunker: {avg_size: 1048576}\n"))
	f.Add([]byte("chunker: {min_size: -1, avg_size: 3}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		if config.Decode(b, &c) == nil {
			_ = c.Chunker.Validate()
		}
	})
}

// TestCredentialSources: tokens come from flags over the environment over
// the config file over --credentials; a bad one is a usage error; commands
// that reach no tracker or origin do not load them.
func TestCredentialSources(t *testing.T) {
	dir := t.TempDir()
	cfg, err := auth.Generate(filepath.Join(dir, "creds"), auth.GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fromDir, _ := auth.LoadToken(cfg.PushTokenFile)
	cfgFile := filepath.Join(dir, "p2pctl.yaml")
	os.WriteFile(cfgFile, []byte("credentials: "+filepath.Dir(cfg.PushTokenFile)+"\npush_token: p2pd_from-the-config-file\n"), 0o600)
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
	}{
		{"directory", "", []string{"--credentials", filepath.Dir(cfg.PushTokenFile)}, fromDir},
		{"config file", "", []string{"--config", cfgFile}, "p2pd_from-the-config-file"},
		{"environment", "p2pd_from-the-environment", []string{"--config", cfgFile}, "p2pd_from-the-environment"},
		{"flag", "p2pd_from-the-environment", []string{"--config", cfgFile, "--push-token", "p2pd_from-the-flag-0"}, "p2pd_from-the-flag-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvPushToken, tc.env)
			g := &globals{stdout: io.Discard, stderr: io.Discard}
			root := newRootCmd(g)
			root.SetArgs(append(tc.args, "ls", "--help"))
			root.SetOut(io.Discard)
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if err := g.load(); err != nil {
				t.Fatal(err)
			}
			if err := g.loadCredentials(); err != nil {
				t.Fatal(err)
			}
			if got := g.creds.Keys.Push; got != tc.want {
				t.Fatalf("push token %q, want %q", got, tc.want)
			}
		})
	}
	t.Setenv(EnvPushToken, "short")
	if code := Main(context.Background(), []string{"--origin", "http://127.0.0.1:1", "push", "-"}, strings.NewReader(""), io.Discard, io.Discard); code != ExitUsage {
		t.Fatalf("a malformed token: exit %d", code)
	}
	if code := Main(context.Background(), []string{"chunk", "-"}, strings.NewReader("x"), io.Discard, io.Discard); code != ExitOK {
		t.Fatalf("chunk with a malformed token in the environment: exit %d", code)
	}
}
