package sched

import (
	"errors"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/config"
)

// TestConfigYAML: every field has a YAML key, and the origin policy is
// spelled by name.
func TestConfigYAML(t *testing.T) {
	const doc = `
max_inflight_per_peer: 16
max_inflight_per_origin: 3
request_timeout: 3s
endgame_threshold: 4
max_duplicates: 3
origin_policy: peer
origin_after_failures: 5
ban_threshold: 2
busy_backoff: 250ms
max_busy_backoff: 4s
`
	var got Config
	if err := config.Decode([]byte(doc), &got); err != nil {
		t.Fatal(err)
	}
	want := Config{
		MaxInflightPerPeer: 16, MaxInflightPerOrigin: 3, RequestTimeout: 3 * time.Second, EndgameThreshold: 4, MaxDuplicates: 3,
		OriginPolicy: OriginAsPeer, OriginAfterFailures: 5, BanThreshold: 2, BusyBackoff: 250 * time.Millisecond,
		MaxBusyBackoff: 4 * time.Second,
	}
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	var bad Config
	if err := config.Decode([]byte("origin_policy: sometimes\n"), &bad); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("unknown policy: %v, want ErrBadConfig", err)
	}
	if b, err := OriginFallback.MarshalText(); err != nil || string(b) != "fallback" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
}
