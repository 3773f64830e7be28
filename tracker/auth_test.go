package tracker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// TestAuth runs a closed tracker: announces need the announce token,
// reads the announce or admin token, a captured announce cannot be sent
// again, and an outsider learns no peer.
func TestAuth(t *testing.T) {
	keys := auth.Keys{}
	for _, k := range []*string{&keys.Announce, &keys.Push, &keys.Admin} {
		var err error
		if *k, err = auth.GenerateToken(); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(Config{}, Deps{Logger: testLogger(t), Auth: auth.NewVerifier(keys, auth.VerifierOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	cap := &httpxtest.Recorder{Base: tr}
	client := func(scope auth.Scope, token string) *trackerclient.Client {
		c, err := trackerclient.New(ts.URL, trackerclient.WithHTTPClient(auth.Client(cap, scope, token, 0)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	member := client(auth.ScopeAnnounce, keys.Announce)
	anon := client(auth.ScopeAnnounce, "")
	if err := anon.Health(ctx); err != nil {
		t.Fatalf("health is open: %v", err)
	}

	if _, err := anon.Announce(ctx, peerReq(blobA, "outsider", 4, 0)); !errors.Is(err, trackerclient.ErrUnauthorized) {
		t.Fatalf("unsigned announce = %v", err)
	}
	if _, err := client(auth.ScopePush, keys.Push).Announce(ctx, peerReq(blobA, "pusher", 4, 0)); !errors.Is(err, trackerclient.ErrUnauthorized) {
		t.Fatalf("announce with the push token = %v", err)
	}
	if _, err := member.Announce(ctx, peerReq(blobA, "p1", 4, 0, 1)); err != nil {
		t.Fatal(err)
	}
	captured, body := cap.Last()
	resp, err := member.Announce(ctx, peerReq(blobA, "p2", 4, 2))
	if err != nil || len(resp.Peers) != 1 || resp.Peers[0].PeerID != "p1" {
		t.Fatalf("member announce: %+v, %v", resp, err)
	}

	// The captured announce, replayed: refused, with no peer in the answer.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+trackerwire.PathAnnounce, bytes.NewReader(body))
	req.Header.Set("Authorization", captured)
	hr, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "p2") || !strings.Contains(string(b), "already received") {
		t.Fatalf("replayed announce: %d %s", hr.StatusCode, b)
	}

	// Reads: refused without a token or with the push token.
	for name, c := range map[string]*trackerclient.Client{"anonymous": anon, "push token": client(auth.ScopePush, keys.Push)} {
		if _, err := c.Swarm(ctx, blobA); !errors.Is(err, trackerclient.ErrUnauthorized) {
			t.Errorf("%s Swarm = %v", name, err)
		}
		if _, err := c.Swarms(ctx); !errors.Is(err, trackerclient.ErrUnauthorized) {
			t.Errorf("%s Swarms = %v", name, err)
		}
	}
	for _, c := range []*trackerclient.Client{member, client(auth.ScopeAdmin, keys.Admin)} {
		st, err := c.Swarm(ctx, blobA)
		if err != nil || len(st.Peers) != 2 {
			t.Fatalf("Swarm = %+v, %v", st, err)
		}
	}
}
