package trackerclient

import (
	"context"
	"net/http"
	"testing"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// FuzzResponses feeds arbitrary tracker answers (status, body) to every
// call of the client: it returns a value or an error, never panics, and
// maps error statuses to its sentinels.
func FuzzResponses(f *testing.F) {
	f.Add(uint8(0), []byte(`{"interval":5,"peers":[{"peer_id":"p1","addrs":["/ip4/127.0.0.1/tcp/1"],"role":"peer","have":3}]}`))
	f.Add(uint8(0), []byte(`{"blob":"sha256:`+chunker.Sum(nil).Hex()+`","num_chunks":4,"peers":[]}`))
	f.Add(uint8(0), []byte(`{"swarms":[{"blob":"sha256:00"}]}`))
	f.Add(uint8(1), []byte(`{"error":"no","code":"INVALID"}`))
	f.Add(uint8(2), []byte(`<html>proxy</html>`))
	f.Add(uint8(3), []byte(`{"error":"replayed","code":"UNAUTHORIZED"}`))
	statuses := []int{200, 400, 502, 401, 403, 404, 409, 500}
	req := &trackerwire.AnnounceRequest{Blob: chunker.Sum([]byte("b")), PeerID: "p", Addrs: []string{"/ip4/127.0.0.1/tcp/1"},
		Role: trackerwire.RolePeer, NumChunks: 4, Bitfield: trackerwire.NewBitfield(4)}
	f.Fuzz(func(t *testing.T, st uint8, body []byte) {
		status := statuses[int(st)%len(statuses)]
		c, err := New("http://tracker", WithHTTPClient(&http.Client{Transport: httpxtest.Canned{Status: status, Body: body}}), WithMaxResponseBytes(1<<16))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		_, err1 := c.Announce(ctx, req)
		_, err2 := c.Swarm(ctx, req.Blob)
		_, err3 := c.Swarms(ctx)
		err4 := c.Health(ctx)
		if status != 200 {
			for _, err := range []error{err1, err2, err3, err4} {
				if err == nil {
					t.Fatalf("status %d gave no error", status)
				}
			}
		}
	})
}
