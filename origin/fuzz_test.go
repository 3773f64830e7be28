package origin

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
	"github.com/p2pd/p2pd/peer/store"
)

// FuzzServeRequest sends arbitrary requests (method, path, query,
// Authorization and expected-digest headers, Range, body) to an open and
// a closed origin's handler: nothing panics, every answer has a known
// status, and every error answer is a JSON error body.
func FuzzServeRequest(f *testing.F) {
	blob := []byte("a small blob")
	d := chunker.Sum(blob).String()
	sig, _ := auth.Sign(auth.ScopePush, "fuzz-push-token-1", "PUT", "/v1/blobs?digest="+d, auth.Unsigned, time.Now())
	f.Add("PUT", "/v1/blobs", "digest="+d, "", "", "", blob)
	f.Add("PUT", "/v1/blobs", "digest="+d, sig, "", "", blob)
	f.Add("POST", "/v1/blobs", "", "", d, "", blob)
	f.Add("GET", "/v1/blobs/"+d+"/data", "", "", "", "bytes=2-5", []byte(nil))
	f.Add("GET", "/v1/blobs/"+d+"/manifest", "", "", "", "", []byte(nil))
	f.Add("DELETE", "/v1/blobs/"+d, "", "Bearer x", "", "", []byte(nil))
	f.Add("GET", "/v1/blobs/sha256:zz", "", "", "", "bytes=-1", []byte(nil))
	var srvs []*Server
	for _, v := range []*auth.Verifier{nil, auth.NewVerifier(auth.Keys{Push: "fuzz-push-token-1"}, auth.VerifierOptions{})} {
		st, err := store.Open(store.DefaultConfig(f.TempDir()))
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { st.Close() })
		s, err := New(Config{MaxBlobSize: 1 << 20}, Deps{Store: st, Auth: v})
		if err != nil {
			f.Fatal(err)
		}
		srvs = append(srvs, s)
	}
	known := map[int]bool{200: true, 201: true, 204: true, 206: true, 301: true, 307: true, 308: true, 400: true, 401: true,
		403: true, 404: true, 405: true, 413: true, 416: true, 503: true}
	f.Fuzz(func(t *testing.T, method, path, query, authz, expect, rng string, body []byte) {
		for _, s := range srvs {
			r, ok := httpxtest.Request(method, path, query, body)
			if !ok {
				return
			}
			for k, v := range map[string]string{"Authorization": authz, "X-P2PD-Expected-Digest": expect, "Range": rng} {
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if !known[w.Code] {
				t.Fatalf("%s %s: status %d", method, path, w.Code)
			}
			if w.Code >= 400 && w.Code != 416 {
				var e struct{ Error, Code string }
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" {
					t.Fatalf("%s %s: %d with body %q", method, path, w.Code, w.Body.String())
				}
			}
		}
	})
}
