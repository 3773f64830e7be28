// Package auth closes a p2pd cluster to outsiders. It holds the cluster's
// credentials and the code that checks them:
//
//   - scoped tokens (announce, push, admin), each a secret shared by the
//     members allowed that scope. A token never goes on the wire: a client
//     signs each HTTP request with it (HMAC-SHA256 over the method, the
//     path and query, a timestamp, a random nonce and the SHA-256 of the
//     body), and the server recomputes the signature and compares it in
//     constant time. A request whose timestamp is outside MaxClockSkew, or
//     whose signature the server has already seen, is refused: a captured
//     request cannot be replayed, and one captured long ago is refused by
//     its age alone;
//   - the private network key (PSK) of the libp2p data plane, with which
//     only members can complete a connection to a peer or an origin;
//   - TLS for the tracker's and the origin's HTTP APIs (a cluster CA that
//     p2pd init makes, and the certificates it signs).
//
// docs/security.md has the threat model. Signer is the client side
// (an http.RoundTripper), Verifier the server side (an http.Handler
// wrapper).
package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Scope names what a token allows.
type Scope string

// The scopes. Announce is the cluster membership token: peers and
// origins announce to the tracker with it, and read the tracker's swarms
// and the origin's blobs. Push uploads blobs to an origin. Admin deletes
// blobs from an origin and reads everything.
const (
	ScopeAnnounce Scope = "announce"
	ScopePush     Scope = "push"
	ScopeAdmin    Scope = "admin"
)

// Scopes lists every scope.
var Scopes = []Scope{ScopeAnnounce, ScopePush, ScopeAdmin}

// Valid reports whether s is a known scope.
func (s Scope) Valid() bool {
	return s == ScopeAnnounce || s == ScopePush || s == ScopeAdmin
}

// Errors; match them with errors.Is.
var (
	// ErrBadToken: a token (or token file) is malformed.
	ErrBadToken = errors.New("auth: bad token")
	// ErrBadPSK: a private network key file is malformed.
	ErrBadPSK = errors.New("auth: bad private network key")
	// ErrUnauthorized: a request's credentials are missing or wrong.
	ErrUnauthorized = errors.New("auth: unauthorized")
	// ErrReplay: a request was seen before, or is too old or too new.
	ErrReplay = errors.New("auth: replayed or stale request")
)

// Token limits. A generated token is TokenPrefix plus 43 characters.
const (
	MinTokenLen = 16
	MaxTokenLen = 256
	// TokenPrefix starts every generated token, so that one found in a
	// log or a paste is recognisable.
	TokenPrefix = "p2pd_"
	// maxCredentialFile bounds a token or key file read.
	maxCredentialFile = 4 << 10
)

// GenerateToken returns a new random token: 256 bits, base64url.
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: generate token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ParseToken checks a token: MinTokenLen..MaxTokenLen printable ASCII
// characters without spaces, after trimming surrounding white space (a
// token file ends with a newline).
func ParseToken(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", fmt.Errorf("%w: empty", ErrBadToken)
	case len(s) < MinTokenLen:
		return "", fmt.Errorf("%w: %d characters, want at least %d", ErrBadToken, len(s), MinTokenLen)
	case len(s) > MaxTokenLen:
		return "", fmt.Errorf("%w: over %d characters", ErrBadToken, MaxTokenLen)
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return "", fmt.Errorf("%w: only printable ASCII without spaces is allowed", ErrBadToken)
	}
	return s, nil
}

// readSmall reads a credential file of at most maxCredentialFile bytes.
// It refuses a file that others may read or write: a secret readable by
// every local user is no secret.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: a credential must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCredentialFile {
		return nil, fmt.Errorf("%s is over %d bytes", path, maxCredentialFile)
	}
	return b, nil
}

// LoadToken reads and checks the token in path.
func LoadToken(path string) (string, error) {
	b, err := readSmall(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	t, err := ParseToken(string(b))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Keys are the tokens a node holds, by scope. A missing scope is empty.
type Keys struct {
	Announce, Push, Admin string
}

// Get returns the token of scope s.
func (k Keys) Get(s Scope) string {
	switch s {
	case ScopeAnnounce:
		return k.Announce
	case ScopePush:
		return k.Push
	case ScopeAdmin:
		return k.Admin
	}
	return ""
}

// Empty reports whether k holds no token.
func (k Keys) Empty() bool { return k == Keys{} }
