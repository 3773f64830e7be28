package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/httpx"
)

// Defaults of a Verifier.
const (
	// DefaultMaxClockSkew is how far a request's timestamp may be from the
	// server's clock.
	DefaultMaxClockSkew = 30 * time.Second
	// DefaultMaxReplayEntries bounds the replay cache. A signature is
	// remembered for 2 to 4 times MaxClockSkew: at 20,000 signed requests
	// a second and the default skew, at most 2.4 million of them, about
	// 16 bytes each.
	DefaultMaxReplayEntries = 4 << 20
)

// CodeUnauthorized is the error code of a refused request.
const CodeUnauthorized = "UNAUTHORIZED"

// VerifierOptions tune a Verifier. The zero value means the defaults.
type VerifierOptions struct {
	// MaxClockSkew bounds |server time - request timestamp| (default
	// DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// MaxReplayEntries bounds the signatures remembered (default
	// DefaultMaxReplayEntries). When it is reached, signed requests are
	// refused (503) until the oldest entries age out.
	MaxReplayEntries int
	// Clock tells the time (default clock.Real()).
	Clock clock.Clock
}

// Verifier checks signed requests against the tokens a server knows. It
// remembers each signature it accepted for twice MaxClockSkew (long enough
// to cover a signature's whole validity), and refuses it again.
type Verifier struct {
	keys       Keys
	skew       time.Duration
	maxEntries int
	clock      clock.Clock

	mu      sync.Mutex
	cur     map[uint64]struct{}
	prev    map[uint64]struct{}
	rotated time.Time
}

// NewVerifier returns a verifier for keys. With no key at all it returns
// nil, and a nil Verifier's Guard lets everything through (an open
// cluster).
func NewVerifier(keys Keys, o VerifierOptions) *Verifier {
	if keys.Empty() {
		return nil
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	if o.MaxReplayEntries <= 0 {
		o.MaxReplayEntries = DefaultMaxReplayEntries
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	return &Verifier{keys: keys, skew: o.MaxClockSkew, maxEntries: o.MaxReplayEntries, clock: o.Clock,
		cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}, rotated: o.Clock.Now()}
}

// Rule says who may call a route.
type Rule struct {
	// Scopes are the tokens accepted. A scope the verifier has no token
	// for accepts nobody, so a route whose scopes all lack a token is
	// closed.
	Scopes []Scope
	// StreamBody lets the body go unsigned (an origin push). Otherwise the
	// body, at most MaxSignedBody bytes, must match the signed hash.
	StreamBody bool
	// Code is the error code of a refusal in the API's error body
	// (default CodeUnauthorized).
	Code string
}

// Guard returns h behind rule. A nil Verifier returns h.
func (v *Verifier) Guard(h http.Handler, rule Rule) http.Handler {
	if v == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v.Allow(w, r, rule) {
			h.ServeHTTP(w, r)
		}
	})
}

// Allow checks r against rule. If r may not pass, it answers it (401,
// 403, 413 or 503 with an error body) and returns false. A nil Verifier
// allows everything.
func (v *Verifier) Allow(w http.ResponseWriter, r *http.Request, rule Rule) bool {
	if v == nil {
		return true
	}
	status, err := v.check(w, r, rule)
	if err != nil {
		code := rule.Code
		if code == "" {
			code = CodeUnauthorized
		}
		w.Header().Set("WWW-Authenticate", Scheme+` realm="p2pd"`)
		httpx.WriteError(w, status, code, err.Error())
		return false
	}
	return true
}

// check verifies r, reading (and replacing) its body if it is signed. It
// returns the status to answer with on failure.
func (v *Verifier) check(w http.ResponseWriter, r *http.Request, rule Rule) (int, error) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return http.StatusUnauthorized, fmt.Errorf("%w: this server needs a signed request (%s)", ErrUnauthorized, Scheme)
	}
	a, err := ParseHeader(h[0])
	if err != nil {
		return http.StatusUnauthorized, err
	}
	if !slices.Contains(rule.Scopes, a.Scope) {
		return http.StatusForbidden, fmt.Errorf("%w: scope %s may not %s %s", ErrUnauthorized, a.Scope, r.Method, r.URL.Path)
	}
	key := v.keys.Get(a.Scope)
	if key == "" {
		return http.StatusForbidden, fmt.Errorf("%w: this server has no %s token", ErrUnauthorized, a.Scope)
	}
	now := v.clock.Now()
	if d := now.Sub(time.Unix(0, a.TS)); d > v.skew || d < -v.skew {
		return http.StatusUnauthorized, fmt.Errorf("%w: timestamp is %v off the server's clock (limit %v)", ErrReplay, d.Round(time.Millisecond), v.skew)
	}
	want := a.mac(key, r.Method, requestURI(r))
	if subtle.ConstantTimeCompare(want[:], a.Sig[:]) != 1 {
		return http.StatusUnauthorized, fmt.Errorf("%w: wrong %s signature", ErrUnauthorized, a.Scope)
	}
	switch {
	case !rule.StreamBody && r.ContentLength > MaxSignedBody:
		return http.StatusRequestEntityTooLarge, fmt.Errorf("%w: a signed body is at most %d bytes", ErrUnauthorized, MaxSignedBody)
	case a.Body == Unsigned && !rule.StreamBody:
		return http.StatusUnauthorized, fmt.Errorf("%w: %s %s needs a signed body", ErrUnauthorized, r.Method, r.URL.Path)
	case a.Body != Unsigned:
		if status, err := checkBody(w, r, a.Body); err != nil {
			return status, err
		}
	}
	return v.remember(a.Sig, now)
}

// checkBody reads r's body (at most MaxSignedBody bytes), compares its
// hash with want and puts it back for the handler.
func checkBody(w http.ResponseWriter, r *http.Request, want string) (int, error) {
	var b []byte
	if r.Body != nil {
		var err error
		b, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSignedBody))
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				return http.StatusRequestEntityTooLarge, fmt.Errorf("%w: a signed body is at most %d bytes", ErrUnauthorized, MaxSignedBody)
			}
			return http.StatusBadRequest, fmt.Errorf("reading the body: %w", err)
		}
	}
	sum := sha256.Sum256(b)
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(want))) != 1 {
		return http.StatusUnauthorized, fmt.Errorf("%w: the body does not match its signature", ErrUnauthorized)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return 0, nil
}

// remember records sig, and fails if it was seen already. Signatures are
// kept in two generations that rotate every 2*skew, so each stays at least
// 2*skew: the longest a timestamp stays within the window.
func (v *Verifier) remember(sig [sha256.Size]byte, now time.Time) (int, error) {
	// 64 bits of the signature: an honest collision (odds about 1e-7 per
	// window at 20,000 requests a second) refuses one request, which is
	// retried; a forged one needs the token.
	k := binary.LittleEndian.Uint64(sig[:8])
	v.mu.Lock()
	defer v.mu.Unlock()
	if now.Sub(v.rotated) >= 2*v.skew {
		v.prev, v.cur = v.cur, make(map[uint64]struct{}, len(v.cur))
		if now.Sub(v.rotated) >= 4*v.skew { // idle long enough that both are stale
			clear(v.prev)
		}
		v.rotated = now
	}
	if _, ok := v.cur[k]; ok {
		return http.StatusUnauthorized, fmt.Errorf("%w: this request was already received", ErrReplay)
	}
	if _, ok := v.prev[k]; ok {
		return http.StatusUnauthorized, fmt.Errorf("%w: this request was already received", ErrReplay)
	}
	if len(v.cur)+len(v.prev) >= v.maxEntries {
		return http.StatusServiceUnavailable, fmt.Errorf("%w: replay cache full, retry later", ErrUnauthorized)
	}
	v.cur[k] = struct{}{}
	return 0, nil
}
