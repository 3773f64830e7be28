// Package httpxtest holds HTTP test helpers shared by the tests of the
// project's servers and clients: a request built from fuzz input, a
// transport that answers with canned bytes, and one that records what a
// client sent (to replay it).
package httpxtest

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Request builds a server-side request from fuzz input, as the server
// would have parsed it off the wire, or returns false for input no HTTP
// request line could carry.
func Request(method, path, query string, body []byte) (*http.Request, bool) {
	if method == "" || !strings.HasPrefix(path, "/") || strings.ContainsAny(method+path+query, " \r\n\x00#") {
		return nil, false
	}
	uri := path
	if query != "" {
		uri += "?" + query
	}
	return &http.Request{
		Method: method, URL: &url.URL{Path: path, RawQuery: query}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Host: "test", RemoteAddr: "127.0.0.1:1",
		RequestURI: uri, ContentLength: int64(len(body)),
	}, true
}

// Canned is a transport that answers every request with Status and Body,
// after reading the request's body.
type Canned struct {
	Status int
	Body   []byte
}

// RoundTrip answers r.
func (c Canned) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: c.Status, Body: io.NopCloser(bytes.NewReader(c.Body)), Header: http.Header{},
		Request: r, ContentLength: int64(len(c.Body))}, nil
}

// Recorder is a transport that keeps the last request sent through it
// (as signed, if it sits below a signer) and its body, then sends it on
// with Base.
type Recorder struct {
	Base http.RoundTripper

	mu   sync.Mutex
	last *http.Request
	body []byte
}

// RoundTrip records r and sends it.
func (rec *Recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.GetBody != nil {
		if rc, err := r.GetBody(); err == nil {
			body, _ = io.ReadAll(rc)
			rc.Close()
		}
	}
	rec.mu.Lock()
	rec.last, rec.body = r, body
	rec.mu.Unlock()
	return rec.Base.RoundTrip(r)
}

// Last returns the last request's Authorization header and body.
func (rec *Recorder) Last() (authorization string, body []byte) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.last == nil {
		return "", nil
	}
	return rec.last.Header.Get("Authorization"), rec.body
}
