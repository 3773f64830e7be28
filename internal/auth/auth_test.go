package auth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustToken(t *testing.T) string {
	t.Helper()
	tok, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type testServer struct {
	url   string
	clock *clock.Fake
	keys  Keys
	rec   *httpxtest.Recorder
}

// newServer serves an echo handler behind rules on a loopback listener.
func newServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{clock: clock.NewFake(time.Unix(1_700_000_000, 0)),
		keys: Keys{Announce: mustToken(t), Push: mustToken(t), Admin: mustToken(t)}}
	v := NewVerifier(ts.keys, VerifierOptions{MaxClockSkew: time.Minute, Clock: ts.clock})
	mux := http.NewServeMux()
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	mux.Handle("POST /announce", v.Guard(echo, Rule{Scopes: []Scope{ScopeAnnounce}}))
	mux.Handle("GET /read", v.Guard(echo, Rule{Scopes: []Scope{ScopeAnnounce, ScopeAdmin}}))
	mux.Handle("PUT /push", v.Guard(echo, Rule{Scopes: []Scope{ScopePush}, StreamBody: true}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ts.url = srv.URL
	ts.rec = &httpxtest.Recorder{Base: srv.Client().Transport}
	t.Cleanup(srv.Client().CloseIdleConnections)
	return ts
}

func (ts *testServer) client(scope Scope, token string) *http.Client {
	return &http.Client{Transport: &Signer{Base: ts.rec, Scope: scope, Token: token, Now: ts.clock.Now}}
}

func do(t *testing.T, hc *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestGuard(t *testing.T) {
	ts := newServer(t)
	plain := &http.Client{Transport: ts.rec}
	stranger := mustToken(t)
	tests := []struct {
		name   string
		hc     *http.Client
		method string
		path   string
		body   io.Reader
		want   int
	}{
		{"announce signed", ts.client(ScopeAnnounce, ts.keys.Announce), "POST", "/announce", strings.NewReader(`{"x":1}`), 200},
		{"read with admin", ts.client(ScopeAdmin, ts.keys.Admin), "GET", "/read", nil, 200},
		{"read with announce", ts.client(ScopeAnnounce, ts.keys.Announce), "GET", "/read", nil, 200},
		{"push streamed", ts.client(ScopePush, ts.keys.Push), "PUT", "/push", io.LimitReader(strings.NewReader("stream"), 6), 200},
		{"no signature", plain, "GET", "/read", nil, 401},
		{"unknown token", ts.client(ScopeAnnounce, stranger), "POST", "/announce", strings.NewReader(`{}`), 401},
		{"push token for announce", ts.client(ScopePush, ts.keys.Push), "POST", "/announce", strings.NewReader(`{}`), 403},
		{"announce token claimed as push", ts.client(ScopePush, ts.keys.Announce), "PUT", "/push", strings.NewReader("x"), 401},
		{"announce token for push", ts.client(ScopeAnnounce, ts.keys.Announce), "PUT", "/push", strings.NewReader("x"), 403},
		{"unsigned body refused", ts.client(ScopeAnnounce, ts.keys.Announce), "POST", "/announce", io.LimitReader(strings.NewReader("{}"), 2), 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.hc, newReq(t, tc.method, ts.url+tc.path, tc.body))
			if code != tc.want {
				t.Fatalf("status %d (%s), want %d", code, body, tc.want)
			}
		})
	}
}

func TestReplayAndAge(t *testing.T) {
	ts := newServer(t)
	hc := ts.client(ScopeAnnounce, ts.keys.Announce)
	if code, body := do(t, hc, newReq(t, "POST", ts.url+"/announce", strings.NewReader(`{"peer":"a"}`))); code != 200 {
		t.Fatalf("first announce: %d %s", code, body)
	}
	captured, body := ts.rec.Last()
	replay := func() (int, string) {
		req := newReq(t, "POST", ts.url+"/announce", bytes.NewReader(body))
		req.Header.Set("Authorization", captured)
		return do(t, &http.Client{Transport: ts.rec}, req)
	}
	// At once, and later within the window: refused as already seen.
	for _, d := range []time.Duration{0, 50 * time.Second} {
		ts.clock.Advance(d)
		if code, msg := replay(); code != 401 || !strings.Contains(msg, "already received") {
			t.Fatalf("replay after %v: %d %s", d, code, msg)
		}
	}
	// Long after: refused by its age, even once the cache has rotated.
	ts.clock.Advance(10 * time.Minute)
	if code, msg := replay(); code != 401 || !strings.Contains(msg, "off the server's clock") {
		t.Fatalf("old replay: %d %s", code, msg)
	}
	// A tampered body with the captured header is refused.
	req := newReq(t, "POST", ts.url+"/announce", strings.NewReader(`{"peer":"b"}`))
	req.Header.Set("Authorization", captured)
	if code, _ := do(t, &http.Client{Transport: ts.rec}, req); code != 401 {
		t.Fatalf("tampered: %d", code)
	}
	// A fresh request still works.
	if code, msg := do(t, hc, newReq(t, "POST", ts.url+"/announce", strings.NewReader(`{}`))); code != 200 {
		t.Fatalf("fresh: %d %s", code, msg)
	}
}

func TestReplayCacheBound(t *testing.T) {
	v := NewVerifier(Keys{Announce: "0123456789abcdef"}, VerifierOptions{MaxReplayEntries: 2})
	now := time.Now()
	for i, want := range []int{0, 0, http.StatusServiceUnavailable} {
		var sig [32]byte
		sig[0] = byte(i)
		if code, _ := v.remember(sig, now); code != want {
			t.Fatalf("entry %d: %d, want %d", i, code, want)
		}
	}
	// Two rotations later the old entries are gone.
	var sig [32]byte
	sig[0] = 9
	if code, err := v.remember(sig, now.Add(5*DefaultMaxClockSkew)); code != 0 {
		t.Fatalf("after rotation: %v", err)
	}
}

func TestNilVerifierIsOpen(t *testing.T) {
	if v := NewVerifier(Keys{}, VerifierOptions{}); v != nil {
		t.Fatal("a verifier without keys")
	}
	var v *Verifier
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := v.Guard(h, Rule{}); got == nil {
		t.Fatal("nil handler")
	}
}

func TestParseHeader(t *testing.T) {
	good, err := Sign(ScopeAdmin, "0123456789abcdef", "GET", "/x", BodyHash(nil), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseHeader(good); err != nil {
		t.Fatalf("good header: %v", err)
	}
	for _, h := range []string{
		"", "Bearer abc", Scheme, Scheme + " scope=admin",
		strings.Replace(good, "scope=admin", "scope=root", 1),
		strings.Replace(good, "ts=", "ts=x", 1),
		good + ",sig=00",
		good + ",extra=1",
		strings.Replace(good, "nonce=", "nonce=0", 1),
		Scheme + " " + strings.Repeat("a", MaxHeaderLen),
	} {
		if _, err := ParseHeader(h); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("ParseHeader(%q) = %v, want ErrUnauthorized", h, err)
		}
	}
}

func TestTokens(t *testing.T) {
	tok := mustToken(t)
	if got, err := ParseToken(tok + "\n"); err != nil || got != tok {
		t.Fatalf("ParseToken = %q, %v", got, err)
	}
	for _, s := range []string{"", "short", "has a space in it ok", strings.Repeat("x", MaxTokenLen+1), "tab\tinside-0123456789"} {
		if _, err := ParseToken(s); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v", s, err)
		}
	}
}

func TestPSK(t *testing.T) {
	psk, err := GeneratePSK()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePSK(EncodePSK(psk))
	if err != nil || !bytes.Equal(got, psk) {
		t.Fatalf("round trip: %v", err)
	}
	enc := string(EncodePSK(psk))
	for _, s := range []string{
		"", "/key/swarm/psk/1.0.0/\n/base16/\n00",
		enc + "trailing",
		strings.Replace(enc, "/base16/", "/base32/", 1),
		"/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("0", 64) + "\n",
	} {
		if _, err := ParsePSK([]byte(s)); !errors.Is(err, ErrBadPSK) {
			t.Errorf("ParsePSK(%q) = %v", s, err)
		}
	}
}

func TestGenerateAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	cfg, err := Generate(dir, GenerateOptions{Hosts: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{FilePSK, FileAnnounce, FilePush, FileAdmin, FileCAKey, FileServerKey} {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", n, st.Mode().Perm())
		}
	}
	cr, err := cfg.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.PSK) != PSKLen || cr.Keys.Announce == "" || cr.Keys.Push == "" || cr.Keys.Admin == "" || cr.ServerTLS == nil {
		t.Fatalf("loaded %+v", cr)
	}
	if cr.Keys.Announce == cr.Keys.Push || cr.Keys.Push == cr.Keys.Admin || cr.Keys.Announce == cr.Keys.Admin {
		t.Fatal("tokens are not distinct")
	}
	if _, err := Generate(dir, GenerateOptions{}); err == nil {
		t.Fatal("Generate overwrote existing credentials")
	}
	// A credential others can read is refused.
	os.Chmod(cfg.PushTokenFile, 0o644)
	if _, err := cfg.Load(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable token: %v", err)
	}
}

// TestTLS serves TLS with a generated certificate and reaches it with a
// client that trusts the generated CA, and not without.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Generate(dir, GenerateOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := cfg.Load()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = cr.ServerTLS
	srv.StartTLS()
	defer srv.Close()
	hc := cr.Client(ScopeAdmin, 5*time.Second)
	defer hc.CloseIdleConnections()
	code, body := do(t, hc, newReq(t, "GET", srv.URL, nil))
	if code != 200 || body != "ok" {
		t.Fatalf("trusted: %d %s", code, body)
	}
	untrusted := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer untrusted.CloseIdleConnections()
	if _, err := untrusted.Get(srv.URL); err == nil {
		t.Fatal("a client without the CA connected")
	}
}

func FuzzParseHeader(f *testing.F) {
	good, _ := Sign(ScopeAnnounce, "0123456789abcdef", "POST", "/v1/announce", Unsigned, time.Unix(1, 0))
	f.Add(good)
	f.Add(Scheme + " scope=push,ts=1,nonce=00,body=UNSIGNED,sig=00")
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseHeader(h)
		if err != nil {
			return
		}
		b, err := ParseHeader(a.String())
		if err != nil || *a != *b {
			t.Fatalf("re-parse of %q: %v", a.String(), err)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	f.Add("p2pd_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n")
	f.Add(" short ")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if again, err := ParseToken(tok); err != nil || again != tok {
			t.Fatalf("ParseToken not idempotent on %q", tok)
		}
	})
}

func FuzzParsePSK(f *testing.F) {
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("ab", 32) + "\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base64/\n" + strings.Repeat("A", 43) + "=\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/bin/\n" + strings.Repeat("k", 32)))
	f.Fuzz(func(t *testing.T, b []byte) {
		psk, err := ParsePSK(b)
		if err != nil {
			return
		}
		if len(psk) != PSKLen {
			t.Fatalf("%d-byte key", len(psk))
		}
		if again, err := ParsePSK(EncodePSK(psk)); err != nil || !bytes.Equal(again, psk) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

// BenchmarkVerify measures a tracker's cost of checking one signed
// announce (a 1 KiB body): parse, HMAC, body hash and copy, replay cache.
// The requests are signed beforehand.
func BenchmarkVerify(b *testing.B) {
	key := "p2pd_benchmark-token-0123456789abcdef"
	v := NewVerifier(Keys{Announce: key}, VerifierOptions{MaxReplayEntries: 1 << 30})
	body := bytes.Repeat([]byte("x"), 1024)
	sum := BodyHash(body)
	rule := Rule{Scopes: []Scope{ScopeAnnounce}}
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		a, _ := Sign(ScopeAnnounce, key, "POST", "/v1/announce", sum, time.Now())
		reqs[i] = httptest.NewRequest("POST", "/v1/announce", bytes.NewReader(body))
		reqs[i].Header.Set("Authorization", a)
	}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !v.Allow(w, reqs[i], rule) {
			b.Fatal(w.Body.String())
		}
	}
}

// BenchmarkSign measures a peer's cost of signing one announce.
func BenchmarkSign(b *testing.B) {
	for b.Loop() {
		Sign(ScopeAnnounce, "p2pd_benchmark-token-0123456789abcdef", "POST", "/v1/announce", Unsigned, time.Now())
	}
}
