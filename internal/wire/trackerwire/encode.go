package trackerwire

import (
	"encoding/json"
	"strconv"
)

// AppendJSON appends r encoded as JSON to b: the same bytes as
// json.Marshal(r), several times faster. The tracker writes one of these
// for nearly every request it serves, each with dozens of peers.
func (r *AnnounceResponse) AppendJSON(b []byte) []byte {
	b = append(b, `{"interval":`...)
	b = strconv.AppendInt(b, r.Interval, 10)
	b = append(b, `,"peers":`...)
	if r.Peers == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Peers {
			if i > 0 {
				b = append(b, ',')
			}
			b = r.Peers[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	if r.NeedFull {
		b = append(b, `,"need_full":true`...)
	}
	return append(b, '}')
}

func (p *PeerInfo) appendJSON(b []byte) []byte {
	b = append(b, `{"peer_id":`...)
	b = appendString(b, p.PeerID)
	b = append(b, `,"addrs":`...)
	if p.Addrs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, a := range p.Addrs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	}
	b = append(b, `,"role":`...)
	b = appendString(b, string(p.Role))
	if p.Complete {
		b = append(b, `,"complete":true`...)
	}
	b = append(b, `,"have":`...)
	b = strconv.AppendUint(b, uint64(p.Have), 10)
	if p.Zone != "" {
		b = append(b, `,"zone":`...)
		b = appendString(b, p.Zone)
	}
	if p.Rack != "" {
		b = append(b, `,"rack":`...)
		b = appendString(b, p.Rack)
	}
	return append(b, '}')
}

// plain marks the bytes encoding/json writes as they are: printable
// ASCII but for the quote, the backslash, and the HTML-escaped <, > and &.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendString appends s as a JSON string the way encoding/json does.
// The strings of a response are validated tokens, printable ASCII that
// needs no escaping; anything else goes through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
