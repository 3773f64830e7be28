package httpx

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxErrorBytes bounds the body DecodeError reads from an error response.
const MaxErrorBytes = 64 << 10

// maxRawMessage bounds the part of an error body that is not an ErrorBody
// (a proxy's HTML page, say) kept as APIError.Message.
const maxRawMessage = 200

// APIError is an error answer of one of the project's HTTP APIs, as a
// client sees it: the request, the status and the server's ErrorBody.
// Each client maps the status and code to one of its own sentinel errors
// and sets it as Kind, which errors.Is matches through Unwrap.
type APIError struct {
	// Service names the server in Error() ("tracker", "origin", ...).
	Service string
	// Method and Path are the request's (Path has no query).
	Method, Path string
	// StatusCode is the HTTP status, or 0 for an error reported inside a
	// streamed 200 answer.
	StatusCode int
	// Code and Message are the server's ErrorBody. If the body was not
	// one, Code is empty and Message is the start of the body as text.
	Code, Message string
	// Kind is the client's sentinel error for the status and code; nil
	// matches none.
	Kind error
}

// Error reads "SERVICE: METHOD PATH: STATUS CODE: MESSAGE", leaving out
// the parts that are unknown; an empty message is the status text.
func (e *APIError) Error() string {
	var b strings.Builder
	if e.Service != "" {
		b.WriteString(e.Service + ": ")
	}
	if e.Method != "" || e.Path != "" {
		b.WriteString(strings.TrimSpace(e.Method+" "+e.Path) + ": ")
	}
	var status []string
	if e.StatusCode != 0 {
		status = append(status, fmt.Sprint(e.StatusCode))
	}
	if e.Code != "" {
		status = append(status, e.Code)
	}
	if len(status) > 0 {
		b.WriteString(strings.Join(status, " ") + ": ")
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if msg == "" {
		msg = "error"
	}
	b.WriteString(msg)
	return b.String()
}

// Unwrap returns Kind, so that errors.Is(err, sentinel) matches the
// client's sentinel for the answer.
func (e *APIError) Unwrap() error { return e.Kind }

// KindFunc maps the status and code of an error answer to a client's
// sentinel error (see APIError.Kind). code is empty if the body was not
// an ErrorBody; status is 0 for an error inside a streamed answer.
type KindFunc func(status int, code string) error

// DecodeError reads the error answer resp into an *APIError naming
// service, with Kind from kind (nil: no Kind). It reads at most
// MaxErrorBytes of the body, ignores a failure to read it (the status
// says enough), and does not close it. The method and path are
// resp.Request's, which http.Client sets.
func DecodeError(resp *http.Response, service string, kind KindFunc) error {
	e := &APIError{Service: service, StatusCode: resp.StatusCode}
	if req := resp.Request; req != nil {
		e.Method = req.Method
		if req.URL != nil {
			e.Path = req.URL.Path
		}
	}
	var b []byte
	if resp.Body != nil {
		b, _ = io.ReadAll(io.LimitReader(resp.Body, MaxErrorBytes))
	}
	var body ErrorBody
	if json.Unmarshal(b, &body) == nil && (body.Error != "" || body.Code != "") {
		e.Code, e.Message = body.Code, body.Error
	} else {
		e.Message = rawMessage(b)
	}
	if kind != nil {
		e.Kind = kind(e.StatusCode, e.Code)
	}
	return e
}

// rawMessage is the start of an error body that is not an ErrorBody, as
// valid UTF-8 text.
func rawMessage(b []byte) string {
	msg := string(b[:min(len(b), maxRawMessage)])
	msg = strings.TrimSpace(strings.ToValidUTF8(msg, ""))
	if len(b) > maxRawMessage {
		msg += " ..."
	}
	return msg
}
