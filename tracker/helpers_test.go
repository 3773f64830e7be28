package tracker

import (
	"bytes"
	"io"
	"net/http/httptest"
)

// httptestRecorder serves one request in process and returns the status.
func httptestRecorder(s *Server, method, path string) int {
	return httptestRecorderBody(s, method, path, nil)
}

func httptestRecorderBody(s *Server, method, path string, body []byte) int {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, r))
	return rec.Code
}
