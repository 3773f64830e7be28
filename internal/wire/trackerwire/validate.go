package trackerwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// Errors of decoding and validation. The server maps them to error codes:
// ErrMalformed to CodeMalformed, ErrTooLarge to CodeTooLarge, ErrInvalid
// to CodeInvalid, all with status 400.
var (
	ErrMalformed = errors.New("trackerwire: malformed request")
	ErrTooLarge  = errors.New("trackerwire: request too large")
	ErrInvalid   = errors.New("trackerwire: invalid request")
)

// DecodeAnnounceRequest reads at most MaxRequestBytes from r, decodes an
// AnnounceRequest and validates it. Unknown JSON fields are ignored, so
// that newer peers can talk to older trackers; trailing data is not.
func DecodeAnnounceRequest(r io.Reader) (*AnnounceRequest, error) {
	bp := bodyPool.Get().(*[]byte)
	b, err := readAtMost((*bp)[:0], r, MaxRequestBytes+1)
	defer func() {
		// The request holds no part of b: Parse copies what it keeps.
		if cap(b) <= maxPooledBody {
			*bp = b[:0]
			bodyPool.Put(bp)
		}
	}()
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, MaxRequestBytes)
		}
		return nil, fmt.Errorf("%w: reading body: %w", ErrMalformed, err)
	}
	return ParseAnnounceRequest(b)
}

// bodyPool holds the buffers DecodeAnnounceRequest reads bodies into; one
// over maxPooledBody (a full bitfield of a large blob) is let go.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

const maxPooledBody = 64 << 10

// readAtMost appends what r yields to b, up to n bytes, until io.EOF.
func readAtMost(b []byte, r io.Reader, n int) ([]byte, error) {
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(max(cap(b), 512), n-len(b)))
		}
		m, err := r.Read(b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// ParseAnnounceRequest decodes and validates an AnnounceRequest. What
// json.Marshal makes of one (trackerclient's requests) takes a fast path
// that decodes it to the same value.
func ParseAnnounceRequest(b []byte) (*AnnounceRequest, error) {
	if len(b) > MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxRequestBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	req, ok := parseCanonical(b)
	if !ok {
		req = new(AnnounceRequest)
		if err := json.Unmarshal(b, req); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}

// Validate checks r against the limits and rules of the protocol. Errors
// wrap ErrInvalid and quote at most a short prefix of hostile strings.
func (r *AnnounceRequest) Validate() error {
	if r.Blob.IsZero() {
		return fmt.Errorf("%w: blob digest missing", ErrInvalid)
	}
	if err := checkToken("peer_id", r.PeerID, MaxPeerIDLen, isPeerIDByte); err != nil {
		return err
	}
	if r.PeerID == "" {
		return fmt.Errorf("%w: peer_id missing", ErrInvalid)
	}
	if !r.Role.Valid() {
		return fmt.Errorf("%w: role %s: want %q or %q", ErrInvalid, quote(string(r.Role)), RolePeer, RoleOrigin)
	}
	if !r.Event.Valid() {
		return fmt.Errorf("%w: event %s: want started, completed, stopped or none", ErrInvalid, quote(string(r.Event)))
	}
	if r.NumChunks == 0 || r.NumChunks > MaxNumChunks {
		return fmt.Errorf("%w: num_chunks %d is outside 1..%d", ErrInvalid, r.NumChunks, MaxNumChunks)
	}
	if err := checkToken("zone", r.Zone, MaxLabelLen, isLabelByte); err != nil {
		return err
	}
	if err := checkToken("rack", r.Rack, MaxLabelLen, isLabelByte); err != nil {
		return err
	}
	if !r.Manifest.IsZero() && r.Role != RoleOrigin {
		return fmt.Errorf("%w: manifest is announced by origins only, not role %s", ErrInvalid, quote(string(r.Role)))
	}
	if r.NumWant != nil && (*r.NumWant < 0 || *r.NumWant > MaxNumWant) {
		return fmt.Errorf("%w: num_want %d is outside 0..%d", ErrInvalid, *r.NumWant, MaxNumWant)
	}
	if r.DownloadedFromOrigins > r.Downloaded {
		return fmt.Errorf("%w: downloaded_from_origins %d exceeds downloaded %d", ErrInvalid, r.DownloadedFromOrigins, r.Downloaded)
	}
	if err := r.validateAddrs(); err != nil {
		return err
	}
	return r.validateChunks()
}

func (r *AnnounceRequest) validateAddrs() error {
	if len(r.Addrs) > MaxAddrs {
		return fmt.Errorf("%w: %d addrs, limit %d", ErrInvalid, len(r.Addrs), MaxAddrs)
	}
	if len(r.Addrs) == 0 && r.Event != EventStopped {
		return fmt.Errorf("%w: addrs missing", ErrInvalid)
	}
	for i, a := range r.Addrs {
		if a == "" || a[0] != '/' {
			return fmt.Errorf("%w: addrs[%d] %s is not a multiaddr", ErrInvalid, i, quote(a))
		}
		if err := checkToken("addrs["+strconv.Itoa(i)+"]", a, MaxAddrLen, isAddrByte); err != nil {
			return err
		}
		for _, b := range r.Addrs[:i] {
			if a == b {
				return fmt.Errorf("%w: addrs[%d] %s is repeated", ErrInvalid, i, quote(a))
			}
		}
	}
	return nil
}

func (r *AnnounceRequest) validateChunks() error {
	switch {
	case r.Bitfield != nil && r.Delta != nil:
		return fmt.Errorf("%w: both bitfield and delta set", ErrInvalid)
	case r.Bitfield != nil:
		if err := r.Bitfield.Check(r.NumChunks); err != nil {
			return err
		}
		if r.Complete && r.Bitfield.Count() != int(r.NumChunks) {
			return fmt.Errorf("%w: complete, but the bitfield has %d of %d chunks", ErrInvalid, r.Bitfield.Count(), r.NumChunks)
		}
	case r.Delta != nil:
		if len(r.Delta.Added) > MaxDeltaAdded {
			return fmt.Errorf("%w: delta adds %d chunks, limit %d: send a full bitfield", ErrInvalid, len(r.Delta.Added), MaxDeltaAdded)
		}
		for _, i := range r.Delta.Added {
			if i >= r.NumChunks {
				return fmt.Errorf("%w: delta adds chunk %d of %d", ErrInvalid, i, r.NumChunks)
			}
		}
	case !r.Complete && r.Event != EventStopped:
		return fmt.Errorf("%w: bitfield or delta missing", ErrInvalid)
	}
	return nil
}

// checkToken checks s's length and bytes.
func checkToken(field, s string, maxLen int, ok func(byte) bool) error {
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalid, field, len(s), maxLen)
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return fmt.Errorf("%w: %s %s: byte %d (%#x) not allowed", ErrInvalid, field, quote(s), i, s[i])
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isPeerIDByte admits base58, base32 and base36 peer IDs and simple names
// used in tests.
func isPeerIDByte(c byte) bool { return isAlnum(c) || c == '-' || c == '_' || c == '.' }

func isLabelByte(c byte) bool {
	return isAlnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '/'
}

// isAddrByte admits printable ASCII but space: multiaddrs carry DNS names,
// IPv6 literals, and percent-encoded path components.
func isAddrByte(c byte) bool { return c > ' ' && c < 0x7f }

// quote quotes a prefix of s for an error message.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
