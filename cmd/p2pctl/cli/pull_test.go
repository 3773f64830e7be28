package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/progress/progresstest"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/tracker"
)

// TestPullProgress pushes blobs to a real cluster (tracker, origin, one
// peer, wired as p2pd wires them) and pulls them with p2pctl: on a
// terminal the pull draws a bar that ends on the final split between
// peers and origin; anywhere else it writes nothing on stderr.
func TestPullProgress(t *testing.T) {
	c := testbed.NewCluster(t, testbed.Options{
		Peers:   1,
		Tracker: tracker.Config{AnnounceInterval: time.Second},
		Origin:  origin.Config{Chunker: chunker.Config{MinSize: 64 << 10, AvgSize: 256 << 10, MaxSize: 1 << 20}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	endpoints := []string{"--origin", c.Origin.URL("http"), "--peer", c.Peers[0].Addrs["control"], "--credentials", c.CredentialsDir}
	const size = 4 << 20

	// The cluster is closed: a push without its credentials is refused.
	var errb bytes.Buffer
	if code, _ := runTo(ctx, nil, &errb, "--origin", c.Origin.URL("http"), "push", writeFile(t, "blob", []byte("outsider"))); code != ExitDenied {
		t.Fatalf("push without credentials: exit %d: %s", code, errb.String())
	}

	// pull pushes a fresh blob, so that every case is a real transfer, and
	// pulls it to a file with stderr going to w. It returns stdout.
	pull := func(t *testing.T, seed uint64, stderr io.Writer) string {
		t.Helper()
		data := chunkertest.Bytes(seed, size)
		var errb bytes.Buffer
		code, out := runTo(ctx, nil, &errb, slices.Concat(endpoints, []string{"push", writeFile(t, "blob", data)})...)
		if code != ExitOK {
			t.Fatalf("push: exit %d: %s", code, errb.String())
		}
		digest := strings.TrimSpace(out)
		if digest != chunker.Sum(data).String() {
			t.Fatalf("push printed %q, want %s", digest, chunker.Sum(data))
		}
		file := filepath.Join(t.TempDir(), "copy")
		code, out = runTo(ctx, nil, stderr, slices.Concat(endpoints, []string{"pull", digest, "-o", file})...)
		if code != ExitOK {
			errs := "on the terminal"
			if s, ok := stderr.(fmt.Stringer); ok {
				errs = s.String()
			}
			t.Fatalf("pull: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
		}
		if !strings.Contains(out, "written to "+file+", verified") {
			t.Fatalf("pull did not report a verified file:\n%s", out)
		}
		if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the pulled file differs from the pushed blob (%d bytes, %v)", len(got), err)
		}
		return out
	}
	// summary is pull's stdout line: "sha256:... 4.00 MiB in 0.12s (peers 0 B, origin 4.00 MiB)".
	summary := regexp.MustCompile(`\(peers ([^,]+), origin ([^)]+)\)`)

	t.Run("terminal", func(t *testing.T) {
		pty := progresstest.Open(t)
		out := pull(t, 1, pty.TTY)
		split := summary.FindStringSubmatch(out)
		if split == nil {
			t.Fatalf("no peers/origin split in the summary:\n%s", out)
		}
		screen := pty.WaitFor(t, 5*time.Second, "\n")
		// The final line: full bar, size, rate, ETA and the same split as
		// the summary.
		final := regexp.MustCompile(`\rpull \[=+\] 100\.0% 4\.00 MiB \d+ MB/s ETA (--|\d[\dhms.]*) peers ` +
			regexp.QuoteMeta(split[1]) + `, origin ` + regexp.QuoteMeta(split[2]) + `, \d+ conns\x1b\[K\r\n$`)
		if !final.MatchString(screen) {
			t.Fatalf("the terminal does not end with the finished bar (want %s):\n%q", final, screen)
		}
		t.Logf("terminal: %q", screen)
	})
	t.Run("not a terminal", func(t *testing.T) {
		var stderr bytes.Buffer
		pull(t, 2, &stderr)
		if stderr.Len() != 0 {
			t.Fatalf("pull wrote on a non-terminal stderr: %q", stderr.String())
		}
	})
	t.Run("mode", func(t *testing.T) {
		data := chunkertest.Bytes(3, 64<<10)
		var errb bytes.Buffer
		code, out := runTo(ctx, nil, &errb, slices.Concat(endpoints, []string{"push", writeFile(t, "blob", data)})...)
		if code != ExitOK {
			t.Fatalf("push: exit %d: %s", code, errb.String())
		}
		digest := strings.TrimSpace(out)
		// A umask that would narrow every mode does not change --mode.
		old := syscall.Umask(0o077)
		defer syscall.Umask(old)
		for _, mode := range []os.FileMode{0o640, 0o604, 0o444, 0o000} {
			file := filepath.Join(t.TempDir(), "copy")
			code, out := runTo(ctx, nil, &errb, slices.Concat(endpoints, []string{"pull", digest, "-o", file, "--mode", fmt.Sprintf("%04o", mode)})...)
			if code != ExitOK {
				t.Fatalf("pull --mode %04o: exit %d: %s %s", mode, code, out, errb.String())
			}
			st, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != mode {
				t.Errorf("--mode %04o wrote a file with mode %04o", mode, st.Mode().Perm())
			}
		}
		if code, _ := runTo(ctx, nil, &errb, slices.Concat(endpoints, []string{"pull", digest, "-o", filepath.Join(t.TempDir(), "x"), "--mode", "1777"})...); code != ExitUsage {
			t.Fatalf("--mode 1777: exit %d", code)
		}
	})
}
