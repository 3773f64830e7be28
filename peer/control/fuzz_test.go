package control_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/peer/control"
)

// FuzzServeRequest sends arbitrary requests (method, path, body) to the
// control API, as p2pctl or any local process could: nothing panics and
// every answer has a known status.
func FuzzServeRequest(f *testing.F) {
	data := []byte("blob")
	d := chunker.Sum(data)
	f.Add("POST", ctlwire.PathPull, []byte(`{"digest":"`+d.String()+`"}`))
	f.Add("POST", ctlwire.PathPull, []byte(`{"digest":"sha256:zz"}`))
	f.Add("POST", ctlwire.PathPull, []byte(`{"digest":"`+d.String()+`"}{"digest":1}`))
	f.Add("GET", ctlwire.DataPath(d), []byte(nil))
	f.Add("DELETE", ctlwire.BlobPath(d), []byte(nil))
	f.Add("GET", ctlwire.PathBlobs, []byte(nil))
	f.Add("GET", ctlwire.PathNode, []byte(nil))
	eng := &memEngine{blobs: map[chunker.Digest][]byte{}, avail: map[chunker.Digest][]byte{d: data}}
	h := control.New(eng, nil, nil).Handler()
	known := map[int]bool{200: true, 204: true, 301: true, 307: true, 308: true, 400: true, 404: true, 405: true, 413: true, 500: true}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		r, ok := httpxtest.Request(method, path, "", body)
		if !ok || strings.Contains(path, "?") {
			return
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !known[w.Code] {
			t.Fatalf("%s %s: status %d", method, path, w.Code)
		}
	})
}
