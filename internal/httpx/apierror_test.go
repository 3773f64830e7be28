package httpx

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

var (
	errTestNotFound = errors.New("test: not found")
	errTestServer   = errors.New("test: server error")
)

func testKind(status int, code string) error {
	if status == http.StatusNotFound || code == "NOT_FOUND" {
		return errTestNotFound
	}
	return errTestServer
}

// countingReader serves n bytes of b repeated and counts what was read.
type countingReader struct {
	b    []byte
	n    int
	read int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.read >= r.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && r.read < r.n {
		p[k] = r.b[r.read%len(r.b)]
		k++
		r.read++
	}
	return k, nil
}

// errorResponse is the answer WriteError gives, as a client receives it.
func errorResponse(status int, code, msg string) *http.Response {
	rec := httptest.NewRecorder()
	WriteError(rec, status, code, msg)
	resp := rec.Result()
	resp.Request = httptest.NewRequest(http.MethodGet, "http://example/v1/swarms/x?q=1", nil)
	return resp
}

// rawResponse is an answer with status and body r.
func rawResponse(status int, r io.Reader) *http.Response {
	return &http.Response{
		StatusCode: status,
		Body:       io.NopCloser(r),
		Request:    httptest.NewRequest(http.MethodPost, "http://example/v1/announce", nil),
	}
}

func TestDecodeError(t *testing.T) {
	hugeJSON := `{"error":"` + strings.Repeat("x", 2*MaxErrorBytes) + `","code":"NOT_FOUND"}`
	hugeGarbage := &countingReader{b: []byte("0123456789"), n: 1 << 20}
	hugeErrorBody := &countingReader{b: []byte(hugeJSON), n: len(hugeJSON)}
	for _, tc := range []struct {
		name        string
		resp        *http.Response
		body        *countingReader // if set, resp's body, to check how much is read
		wantCode    string
		wantMessage string
		wantText    string
		wantKind    error
	}{
		{
			name:        "good body",
			resp:        errorResponse(http.StatusNotFound, "NOT_FOUND", "no swarm for x"),
			wantCode:    "NOT_FOUND",
			wantMessage: "no swarm for x",
			wantText:    "svc: GET /v1/swarms/x: 404 NOT_FOUND: no swarm for x",
			wantKind:    errTestNotFound,
		},
		{
			name:        "code maps the kind",
			resp:        errorResponse(http.StatusInternalServerError, "NOT_FOUND", "gone"),
			wantCode:    "NOT_FOUND",
			wantMessage: "gone",
			wantText:    "svc: GET /v1/swarms/x: 500 NOT_FOUND: gone",
			wantKind:    errTestNotFound,
		},
		{
			name:     "code without a message",
			resp:     errorResponse(http.StatusConflict, "CONFLICT", ""),
			wantCode: "CONFLICT",
			wantText: "svc: GET /v1/swarms/x: 409 CONFLICT: Conflict",
			wantKind: errTestServer,
		},
		{
			name:        "garbage body",
			resp:        rawResponse(http.StatusBadGateway, strings.NewReader("  <html>upstream is down</html>\n")),
			wantMessage: "<html>upstream is down</html>",
			wantText:    "svc: POST /v1/announce: 502: <html>upstream is down</html>",
			wantKind:    errTestServer,
		},
		{
			name:        "JSON that is not an ErrorBody",
			resp:        rawResponse(http.StatusNotFound, strings.NewReader(`{"status":"missing"}`)),
			wantMessage: `{"status":"missing"}`,
			wantText:    `svc: POST /v1/announce: 404: {"status":"missing"}`,
			wantKind:    errTestNotFound,
		},
		{
			name:     "empty body",
			resp:     rawResponse(http.StatusServiceUnavailable, strings.NewReader("")),
			wantText: "svc: POST /v1/announce: 503: Service Unavailable",
			wantKind: errTestServer,
		},
		{
			name:     "no body",
			resp:     &http.Response{StatusCode: http.StatusNotFound},
			wantText: "svc: 404: Not Found",
			wantKind: errTestNotFound,
		},
		{
			name:        "oversized garbage body",
			resp:        rawResponse(http.StatusBadGateway, hugeGarbage),
			body:        hugeGarbage,
			wantMessage: strings.Repeat("0123456789", maxRawMessage/10) + " ...",
			wantText:    "svc: POST /v1/announce: 502: " + strings.Repeat("0123456789", maxRawMessage/10) + " ...",
			wantKind:    errTestServer,
		},
		{
			// Cut at the limit, the body is no longer JSON: it is kept as text.
			name:        "oversized ErrorBody",
			resp:        rawResponse(http.StatusNotFound, hugeErrorBody),
			body:        hugeErrorBody,
			wantMessage: hugeJSON[:maxRawMessage] + " ...",
			wantText:    "svc: POST /v1/announce: 404: " + hugeJSON[:maxRawMessage] + " ...",
			wantKind:    errTestNotFound,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := DecodeError(tc.resp, "svc", testKind)
			var e *APIError
			if !errors.As(err, &e) {
				t.Fatalf("DecodeError = %T %v, want *APIError", err, err)
			}
			if e.StatusCode != tc.resp.StatusCode || e.Code != tc.wantCode || e.Message != tc.wantMessage {
				t.Errorf("status %d code %q message %q, want %d %q %q", e.StatusCode, e.Code, clip(e.Message), tc.resp.StatusCode, tc.wantCode, clip(tc.wantMessage))
			}
			if got := err.Error(); got != tc.wantText {
				t.Errorf("Error() = %q\nwant      %q", clip(got), clip(tc.wantText))
			}
			for _, s := range []error{errTestNotFound, errTestServer} {
				if errors.Is(err, s) != (s == tc.wantKind) {
					t.Errorf("errors.Is(err, %v) = %v", s, !(s == tc.wantKind))
				}
			}
			if tc.body != nil && tc.body.read > MaxErrorBytes {
				t.Errorf("read %d bytes of the body, over MaxErrorBytes %d", tc.body.read, MaxErrorBytes)
			}
		})
	}
}

// clip shortens s for a failure message.
func clip(s string) string {
	if len(s) > 300 {
		return fmt.Sprintf("%s... (%d bytes)", s[:300], len(s))
	}
	return s
}

func TestDecodeErrorKeepsValidUTF8(t *testing.T) {
	// "é" is 2 bytes: an odd offset cuts one in half at maxRawMessage.
	body := "x" + strings.Repeat("é", maxRawMessage)
	err := DecodeError(rawResponse(http.StatusBadGateway, strings.NewReader(body)), "svc", nil)
	var e *APIError
	if !errors.As(err, &e) || !utf8.ValidString(e.Message) || !strings.HasPrefix(e.Message, "xéé") {
		t.Fatalf("message %q", e.Message)
	}
	if e.Kind != nil || errors.Unwrap(err) != nil {
		t.Errorf("no KindFunc: Kind = %v", e.Kind)
	}
}

func TestAPIErrorWrapped(t *testing.T) {
	err := fmt.Errorf("pull: %w", DecodeError(errorResponse(http.StatusNotFound, "NOT_FOUND", "no such blob"), "svc", testKind))
	var e *APIError
	if !errors.As(err, &e) || e.Code != "NOT_FOUND" || !errors.Is(err, errTestNotFound) || errors.Is(err, errTestServer) {
		t.Fatalf("wrapped: %v", err)
	}
	if want := "pull: svc: GET /v1/swarms/x: 404 NOT_FOUND: no such blob"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestAPIErrorText(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    APIError
		want string
	}{
		{"all parts", APIError{Service: "origin", Method: "PUT", Path: "/v1/blobs", StatusCode: 413, Code: "TOO_LARGE", Message: "over 1 GiB"}, "origin: PUT /v1/blobs: 413 TOO_LARGE: over 1 GiB"},
		{"streamed error, no status", APIError{Service: "peer daemon", Method: "POST", Path: "/v1/pull", Code: "CANCELED", Message: "context canceled"}, "peer daemon: POST /v1/pull: CANCELED: context canceled"},
		{"status only", APIError{StatusCode: 502}, "502: Bad Gateway"},
		{"nothing", APIError{}, "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDecodeErrorRoundTrip reads what WriteError sends over a real
// connection, through http.Client, which sets resp.Request.
func TestDecodeErrorRoundTrip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "NOT_FOUND", "no blob at "+r.URL.Path)
	}))
	defer srv.Close()
	hc := srv.Client()
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(srv.URL + "/v1/blobs/abc?x=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	err = DecodeError(resp, "origin", testKind)
	if want := "origin: GET /v1/blobs/abc: 404 NOT_FOUND: no blob at /v1/blobs/abc"; err.Error() != want || !errors.Is(err, errTestNotFound) {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}
