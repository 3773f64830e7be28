package control_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/chunker"
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
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(method+path, " \r\n\x00?#") || method == "" {
			return
		}
		r := &http.Request{
			Method: method, URL: &url.URL{Path: path}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Host: "control", RemoteAddr: "127.0.0.1:1",
			RequestURI: path, ContentLength: int64(len(body)),
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !known[w.Code] {
			t.Fatalf("%s %s: status %d", method, path, w.Code)
		}
	})
}
