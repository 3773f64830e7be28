package peer_test

import (
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/tracker"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startTracker serves a real tracker on loopback for the test and returns
// its client. Peers announce every second.
func startTracker(t testing.TB) *trackerclient.Client {
	t.Helper()
	srv, err := tracker.New(tracker.Config{AnnounceInterval: time.Second}, tracker.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c, err := trackerclient.New(ts.URL, trackerclient.WithHTTPClient(ts.Client()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
