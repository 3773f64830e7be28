package cli

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the daemon's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a synchronisation
	}
}

var addrRE = regexp.MustCompile(`tracker listening.* addr=(127\.0\.0\.1:\d+)`)

func TestTrackerRoleServesAndStopsOnSignal(t *testing.T) {
	var out, errs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- Main(ctx, []string{"tracker", "--listen", "127.0.0.1:0"}, &out, &errs) }()

	var addr string
	eventually(t, 10*time.Second, "the tracker's address in the log", func() bool {
		m := addrRE.FindStringSubmatch(errs.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	cancel() // what SIGINT does through signal.NotifyContext
	select {
	case c := <-code:
		if c != ExitOK {
			t.Fatalf("exit %d after a signal, want 0\n%s", c, errs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the tracker did not stop")
	}
}

func TestUsageErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen: x\nnope: 1\n"), 0o600)
	for name, args := range map[string][]string{
		"unknown flag":       {"tracker", "--nope"},
		"unknown config key": {"tracker", "--config", bad},
	} {
		var out, errs syncBuffer
		if c := Main(context.Background(), args, &out, &errs); c != ExitUsage {
			t.Errorf("%s: exit %d, want %d: %s", name, c, ExitUsage, errs.String())
		}
	}
}
