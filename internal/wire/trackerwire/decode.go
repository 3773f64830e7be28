package trackerwire

import (
	"bytes"
	"encoding/base64"
	"strconv"
)

// parseCanonical decodes b if it has the exact form json.Marshal gives an
// AnnounceRequest, as trackerclient sends it: the fields in their order,
// no white space, strings of printable ASCII without escapes, no nulls.
// It then makes the value json.Unmarshal would make, several times
// faster. For anything else it reports false, and ParseAnnounceRequest
// hands b to encoding/json, which accepts the rest of JSON and words the
// errors.
func parseCanonical(b []byte) (*AnnounceRequest, bool) {
	c := canonical{b: b}
	var r AnnounceRequest
	if !c.lit(`{"blob":`) || !c.text(r.Blob.UnmarshalText) || !c.lit(`,"peer_id":`) || !c.str(&r.PeerID) {
		return nil, false
	}
	if c.lit(`,"addrs":[`) {
		r.Addrs = []string{}
		for i := 0; !c.lit("]"); i++ {
			var a string
			if i > 0 && !c.lit(",") || !c.str(&a) {
				return nil, false
			}
			r.Addrs = append(r.Addrs, a)
		}
	}
	var role string
	if !c.lit(`,"role":`) || !c.str(&role) || !c.lit(`,"num_chunks":`) || !c.uint(32, func(n uint64) { r.NumChunks = uint32(n) }) {
		return nil, false
	}
	r.Role = Role(role)
	if c.lit(`,"bitfield":`) && !c.bitfield(&r.Bitfield) {
		return nil, false
	}
	if c.lit(`,"delta":{"added":[`) {
		r.Delta = &Delta{Added: []uint32{}}
		for i := 0; !c.lit("]"); i++ {
			if i > 0 && !c.lit(",") || !c.uint(32, func(n uint64) { r.Delta.Added = append(r.Delta.Added, uint32(n)) }) {
				return nil, false
			}
		}
		if !c.lit("}") {
			return nil, false
		}
	}
	r.Complete = c.lit(`,"complete":true`)
	if !c.lit(`,"uploaded":`) || !c.uint(64, func(n uint64) { r.Uploaded = n }) ||
		!c.lit(`,"downloaded":`) || !c.uint(64, func(n uint64) { r.Downloaded = n }) {
		return nil, false
	}
	if c.lit(`,"downloaded_from_origins":`) && !c.uint(64, func(n uint64) { r.DownloadedFromOrigins = n }) ||
		c.lit(`,"zone":`) && !c.str(&r.Zone) ||
		c.lit(`,"rack":`) && !c.str(&r.Rack) {
		return nil, false
	}
	var event string
	if c.lit(`,"event":`) && !c.str(&event) || c.lit(`,"manifest":`) && !c.text(r.Manifest.UnmarshalText) {
		return nil, false
	}
	r.Event = Event(event)
	if c.lit(`,"num_want":`) && !c.uint(31, func(n uint64) { r.NumWant = WantPeers(int(n)) }) {
		return nil, false
	}
	if !c.lit("}") || c.i != len(b) {
		return nil, false
	}
	return &r, true
}

// canonical reads the canonical JSON of parseCanonical.
type canonical struct {
	b []byte
	i int
}

// lit consumes s if it comes next.
func (c *canonical) lit(s string) bool {
	if !bytes.HasPrefix(c.b[c.i:], []byte(s)) {
		return false
	}
	c.i += len(s)
	return true
}

// raw consumes a string of printable ASCII without escapes and returns
// its contents.
func (c *canonical) raw() ([]byte, bool) {
	if !c.lit(`"`) {
		return nil, false
	}
	start := c.i
	for ; c.i < len(c.b); c.i++ {
		switch ch := c.b[c.i]; {
		case ch == '"':
			c.i++
			return c.b[start : c.i-1], true
		case ch < 0x20 || ch >= 0x7f || ch == '\\':
			return nil, false
		}
	}
	return nil, false
}

func (c *canonical) str(dst *string) bool {
	s, ok := c.raw()
	*dst = string(s)
	return ok
}

// text consumes a string and hands it to an UnmarshalText method, as
// encoding/json does.
func (c *canonical) text(unmarshal func([]byte) error) bool {
	s, ok := c.raw()
	return ok && unmarshal(s) == nil
}

// bitfield consumes a string and decodes it as encoding/json decodes a
// []byte.
func (c *canonical) bitfield(dst *Bitfield) bool {
	s, ok := c.raw()
	if !ok {
		return false
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	*dst = b[:n]
	return err == nil
}

// uint consumes a JSON integer that fits in bits bits and passes it to
// set.
func (c *canonical) uint(bits int, set func(uint64)) bool {
	start := c.i
	for c.i < len(c.b) && '0' <= c.b[c.i] && c.b[c.i] <= '9' {
		c.i++
	}
	digits := c.b[start:c.i]
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
		return false // JSON has no leading zeros
	}
	if c.i < len(c.b) && (c.b[c.i] == '.' || c.b[c.i] == 'e' || c.b[c.i] == 'E') {
		return false
	}
	n, err := strconv.ParseUint(string(digits), 10, bits)
	if err != nil {
		return false
	}
	set(n)
	return true
}
