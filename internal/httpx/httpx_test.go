package httpx

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeAndShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.NewServeMux()
	h.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})
	h.HandleFunc("GET /err", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "NOT_FOUND", "no such thing")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, ServerOptions{Name: "test", ShutdownTimeout: 5 * time.Second}) }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/err")
	if err != nil {
		t.Fatal(err)
	}
	var body ErrorBody
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 404 || body.Code != "NOT_FOUND" || body.Error != "no such thing" {
		t.Fatalf("error response %d %+v", resp.StatusCode, body)
	}

	// A request in flight when the context ends still completes.
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-started
	cancel()
	close(release)
	if code := <-got; code != http.StatusOK {
		t.Fatalf("in-flight request got %d during shutdown", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// appender encodes itself like encoding/json would.
type appender struct{ N int }

func (a appender) AppendJSON(b []byte) []byte { return fmt.Appendf(b, `{"N":%d}`, a.N) }

// TestWriteJSONAppender checks that a JSONAppender is written exactly as
// encoding/json would write it, headers included, and that pooled
// buffers do not leak between responses.
func TestWriteJSONAppender(t *testing.T) {
	for _, n := range []int{1, 22, 333} {
		viaMarshal, viaAppend := httptest.NewRecorder(), httptest.NewRecorder()
		WriteJSON(viaMarshal, http.StatusTeapot, struct{ N int }{n})
		WriteJSON(viaAppend, http.StatusTeapot, appender{n})
		if viaAppend.Code != viaMarshal.Code || viaAppend.Body.String() != viaMarshal.Body.String() ||
			!reflect.DeepEqual(viaAppend.Header(), viaMarshal.Header()) {
			t.Errorf("appender wrote %d %v %q, encoding/json %d %v %q", viaAppend.Code, viaAppend.Header(), viaAppend.Body,
				viaMarshal.Code, viaMarshal.Header(), viaMarshal.Body)
		}
	}
}
