package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Authorization header of a signed request:
//
//	Authorization: P2PD-HMAC-SHA256 scope=announce,ts=1700000000000000000,nonce=<32 hex>,body=<64 hex | UNSIGNED>,sig=<64 hex>
//
// sig is HMAC-SHA256, keyed with the scope's token, of the canonical
// string: the scheme, scope, ts (Unix nanoseconds), nonce, method, the
// request URI's escaped path and raw query, and body, each followed by a
// newline. body is the hex SHA-256 of the request body, or UNSIGNED for a
// streamed body (an origin push, whose integrity the expected digest in the
// signed query guards).
const (
	Scheme = "P2PD-HMAC-SHA256"
	// Unsigned is the body hash of a request whose body is not signed.
	Unsigned = "UNSIGNED"
	// MaxHeaderLen bounds the Authorization header parsed.
	MaxHeaderLen = 512
	// MaxSignedBody bounds a body the Signer hashes, and the Verifier
	// buffers to check. Larger bodies go UNSIGNED.
	MaxSignedBody = 1 << 20
)

// Auth is a parsed Authorization header.
type Auth struct {
	Scope Scope
	TS    int64 // Unix nanoseconds
	Nonce [16]byte
	Body  string // hex SHA-256, or Unsigned
	Sig   [sha256.Size]byte
}

// String formats a as the header value.
func (a *Auth) String() string {
	return fmt.Sprintf("%s scope=%s,ts=%d,nonce=%s,body=%s,sig=%s", Scheme, a.Scope, a.TS,
		hex.EncodeToString(a.Nonce[:]), a.Body, hex.EncodeToString(a.Sig[:]))
}

// ParseHeader parses an Authorization header value. It refuses anything
// but exactly the five fields, once each, in any order.
func ParseHeader(h string) (*Auth, error) {
	if len(h) > MaxHeaderLen {
		return nil, fmt.Errorf("%w: authorization header over %d bytes", ErrUnauthorized, MaxHeaderLen)
	}
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || scheme != Scheme {
		return nil, fmt.Errorf("%w: want an Authorization header with scheme %s", ErrUnauthorized, Scheme)
	}
	a := &Auth{}
	var seen [5]bool
	for field := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok {
			return nil, fmt.Errorf("%w: authorization field %q has no value", ErrUnauthorized, field)
		}
		var i int
		var err error
		switch k {
		case "scope":
			i, a.Scope = 0, Scope(v)
			if !a.Scope.Valid() {
				err = errors.New("unknown scope")
			}
		case "ts":
			i = 1
			a.TS, err = strconv.ParseInt(v, 10, 64)
		case "nonce":
			i = 2
			err = decodeHex(a.Nonce[:], v)
		case "body":
			i, a.Body = 3, v
			if v != Unsigned {
				var b [sha256.Size]byte
				err = decodeHex(b[:], v)
			}
		case "sig":
			i = 4
			err = decodeHex(a.Sig[:], v)
		default:
			return nil, fmt.Errorf("%w: unknown authorization field %q", ErrUnauthorized, k)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: authorization field %s: %w", ErrUnauthorized, k, err)
		}
		if seen[i] {
			return nil, fmt.Errorf("%w: authorization field %s given twice", ErrUnauthorized, k)
		}
		seen[i] = true
	}
	for _, s := range seen {
		if !s {
			return nil, fmt.Errorf("%w: authorization needs scope, ts, nonce, body and sig", ErrUnauthorized)
		}
	}
	return a, nil
}

func decodeHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("want %d hex digits", 2*len(dst))
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

// mac computes the signature of a request with key.
func (a *Auth) mac(key, method, uri string) [sha256.Size]byte {
	m := hmac.New(sha256.New, []byte(key))
	var buf [20]byte
	io.WriteString(m, Scheme+"\n"+string(a.Scope)+"\n")
	m.Write(strconv.AppendInt(buf[:0], a.TS, 10))
	io.WriteString(m, "\n"+hex.EncodeToString(a.Nonce[:])+"\n"+method+"\n"+uri+"\n"+a.Body+"\n")
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// requestURI is the request target that a signature covers: the escaped
// path and query as sent. On the server it is the target as received, so
// that a handler behind http.StripPrefix checks what the client signed.
func requestURI(r *http.Request) string {
	if r.RequestURI != "" { // a server request
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// Sign returns the Authorization value for a request with method and
// URI (escaped path and query), body hash body (hex SHA-256 or Unsigned),
// at time now.
func Sign(scope Scope, key string, method, uri, body string, now time.Time) (string, error) {
	a := &Auth{Scope: scope, TS: now.UnixNano(), Body: body}
	if _, err := rand.Read(a.Nonce[:]); err != nil {
		return "", fmt.Errorf("auth: nonce: %w", err)
	}
	a.Sig = a.mac(key, method, uri)
	return a.String(), nil
}

// BodyHash is the hex SHA-256 of b, as a signature's body field.
func BodyHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Signer is an http.RoundTripper that signs every request with one
// scope's token. Bodies of at most MaxSignedBody bytes that can be read
// twice (http.NewRequest with a bytes.Reader, bytes.Buffer or
// strings.Reader sets GetBody) are signed; others are sent UNSIGNED.
type Signer struct {
	// Base sends the signed requests (default http.DefaultTransport).
	Base  http.RoundTripper
	Scope Scope
	Token string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// RoundTrip signs a copy of req and sends it.
func (s *Signer) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := s.bodyHash(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	h, err := Sign(s.Scope, s.Token, req.Method, requestURI(req), body, now())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	r2 := req.Clone(req.Context())
	r2.Header.Set("Authorization", h)
	base := s.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r2)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func (s *Signer) bodyHash(req *http.Request) (string, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return BodyHash(nil), nil
	}
	// A length of 0 with a body means unknown, for a client request.
	if req.GetBody == nil || req.ContentLength <= 0 || req.ContentLength > MaxSignedBody {
		return Unsigned, nil
	}
	rc, err := req.GetBody()
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(rc, MaxSignedBody)); err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Client returns an HTTP client whose requests are signed with token for
// scope, over base (nil: http.DefaultTransport cloned). timeout 0 means
// none.
func Client(base http.RoundTripper, scope Scope, token string, timeout time.Duration) *http.Client {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	if token == "" {
		return &http.Client{Transport: base, Timeout: timeout}
	}
	return &http.Client{Transport: &Signer{Base: base, Scope: scope, Token: token}, Timeout: timeout}
}
