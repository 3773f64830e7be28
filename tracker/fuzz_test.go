package tracker

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
)

// FuzzServeRequest sends arbitrary requests (method, path, query,
// Authorization header, body) to an open and a closed tracker's handler:
// nothing panics, every answer has a known status, and every error answer
// is a JSON error body (the mux may redirect an unclean path).
func FuzzServeRequest(f *testing.F) {
	announce, _ := json.Marshal(peerReq(blobA, "p1", 4, 0, 2))
	sig, _ := auth.Sign(auth.ScopeAnnounce, "fuzz-announce-token", "POST", "/v1/announce", auth.BodyHash(announce), time.Now())
	f.Add("POST", "/v1/announce", "", "", announce)
	f.Add("POST", "/v1/announce", "", sig, announce)
	f.Add("GET", "/v1/swarms/"+blobA.String(), "chunks=1", "", []byte(nil))
	f.Add("GET", "/v1/swarms", "", "Bearer x", []byte(nil))
	f.Add("DELETE", "/v1/swarms/sha256:00", "", "", []byte(nil))
	f.Add("GET", "/healthz", "", auth.Scheme+" scope=admin,ts=1,nonce=00,body=x,sig=00", []byte(nil))
	f.Add("POST", "/v1/announce", "", "", []byte(`{"blob":"sha256:zz"}`))
	srvs := make([]*Server, 2)
	for i, v := range []*auth.Verifier{nil, auth.NewVerifier(auth.Keys{Announce: "fuzz-announce-token"}, auth.VerifierOptions{})} {
		var err error
		if srvs[i], err = New(Config{}, Deps{Auth: v}); err != nil {
			f.Fatal(err)
		}
	}
	known := map[int]bool{200: true, 301: true, 307: true, 308: true, 400: true, 401: true, 403: true, 404: true, 405: true, 409: true, 413: true, 503: true}
	f.Fuzz(func(t *testing.T, method, path, query, authz string, body []byte) {
		for _, s := range srvs {
			r, ok := httpxtest.Request(method, path, query, body)
			if !ok {
				return
			}
			if authz != "" {
				r.Header.Set("Authorization", authz)
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if !known[w.Code] {
				t.Fatalf("%s %s: status %d", method, path, w.Code)
			}
			if w.Code >= 400 {
				var e struct{ Error, Code string }
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" {
					t.Fatalf("%s %s: %d with body %q", method, path, w.Code, w.Body.String())
				}
			}
		}
	})
}
