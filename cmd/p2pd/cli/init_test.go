package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/config"
	"github.com/p2pd/p2pd/internal/daemon"
)

// TestInit generates credentials with p2pd init: the files are there with
// mode 0600, the JSON names them, the printed YAML loads as each role's
// config, a second run refuses to overwrite them unless --force.
func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := run("init", "--dir", dir, "--host", "127.0.0.1", "--host", "tracker.internal", "--json")
	if code != ExitOK {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	var res initResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(res.Files) != 8 {
		t.Fatalf("files %v", res.Files)
	}
	for _, f := range res.Files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if strings.HasSuffix(f, ".crt") {
			want = 0o644
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", f, st.Mode().Perm(), want)
		}
	}
	if res.Peer.PushTokenFile != "" || res.Peer.AdminTokenFile != "" || res.Peer.PSKFile == "" {
		t.Errorf("the peer's section: %+v", res.Peer)
	}
	// The printed sections are valid configs whose credentials load.
	for _, sec := range strings.Split(res.Snippets, "\n# ")[:3] {
		var c daemon.PeerConfig // shares security with every role
		body := sec[strings.Index(sec, "\n")+1:]
		if err := config.Decode([]byte(body), &c); err != nil {
			t.Fatalf("snippet %q: %v", body, err)
		}
		if _, err := c.Security.Load(); err != nil {
			t.Fatalf("snippet %q: %v", body, err)
		}
	}
	if code, _, errs := run("init", "--dir", dir); code != ExitError || !strings.Contains(errs, "exists") {
		t.Fatalf("second init: exit %d: %s", code, errs)
	}
	old, _ := os.ReadFile(filepath.Join(dir, auth.FilePush))
	if code, out, errs := run("init", "--dir", dir, "--force"); code != ExitOK || !strings.Contains(out, "security:") {
		t.Fatalf("init --force: exit %d: %s %s", code, out, errs)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, auth.FilePush)); bytes.Equal(now, old) {
		t.Fatal("--force kept the old push token")
	}
	if code, _, _ := run("init"); code != ExitUsage {
		t.Fatalf("init without --dir: exit %d", code)
	}
	if code, out, _ := run("init", "--help"); code != ExitOK || !strings.Contains(out, "swarm.key") {
		t.Fatalf("init --help: exit %d: %s", code, out)
	}
}
