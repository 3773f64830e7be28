package peerstore

import (
	"bytes"
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// DefaultTTL is the record lifetime NewMemory uses when given none.
const DefaultTTL = 15 * time.Second

// numShards spreads swarms over independently locked maps. Blob digests
// are uniformly distributed, so the first byte picks a shard.
const numShards = 16

// Memory is an in-memory Store. A record expires ttl after its latest
// announce: reads skip expired records at once, and Expire (which the
// tracker calls periodically) frees them.
//
// Each swarm keeps its records in two dense lists (origins and other
// peers) indexed by a map from peer ID, so sampling is O(sample) and a
// record costs its fields, its bitfield, one map entry and a slot of its
// list. Records of complete peers share one all-ones bitfield per swarm;
// a bitfield of up to 2,048 chunks lives in its record's allocation.
type Memory struct {
	clock clock.Clock
	ttl   time.Duration
	// epoch is the origin of slot.seen.
	epoch  time.Time
	shards [numShards]shard
}

type shard struct {
	mu     sync.RWMutex
	swarms map[chunker.Digest]*swarm
	_      [32]byte // one cache line per shard: no false sharing of locks
}

type swarm struct {
	numChunks uint32
	full      trackerwire.Bitfield // all ones, shared by complete records
	peers     members
	origins   members
	index     map[string]int // peer ID -> index in peers, or -1-index in origins
	// Uploaded counts of records no longer live, by role.
	retiredOrigins, retiredPeers uint64
	// gone remembers the retired count of each removed record for a
	// while, so that a peer that expired and comes back with the same
	// counters is not counted twice.
	gone map[string]tombstone
	// labels interns zone and rack names, so records share them and
	// comparing equal labels does not touch their bytes.
	labels map[string]string
}

// members is one of a swarm's lists of records. Beside each record it
// keeps the time it was last seen (its LastSeen, in nanoseconds since
// Memory.epoch), so that sampling and sweeps judge expiry without reading
// the records: in a large swarm each record read is a cache miss.
type members []slot

type slot struct {
	rec  *Record
	seen int64
}

// add appends r and returns its index.
func (ms *members) add(r *Record, seen int64) int {
	*ms = append(*ms, slot{r, seen})
	return len(*ms) - 1
}

// remove empties slot i by moving the last record into it, and returns
// the record moved (nil if i was the last slot).
func (ms *members) remove(i int) (moved *Record) {
	s := *ms
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		moved = s[i].rec
	}
	s[last] = slot{}
	*ms = s[:last]
	return moved
}

// sample appends to out the records of k distinct slots drawn uniformly
// at random (of every slot if k is 0 or at least len), leaving out
// exclude and those seen at or before minSeen. It reads no record.
func (ms members) sample(out []*Record, k int, rng *rand.Rand, minSeen int64, exclude *Record) []*Record {
	keep := func(i int) {
		if s := ms[i]; s.rec != exclude && s.seen > minSeen {
			out = append(out, s.rec)
		}
	}
	n := len(ms)
	if k <= 0 || k >= n {
		for i := range n {
			keep(i)
		}
		return out
	}
	if k > n/4 {
		// Selection sampling (Knuth's algorithm S): one pass, no memory.
		need := k
		for i := range n {
			if rng.IntN(n-i) < need {
				keep(i)
				if need--; need == 0 {
					break
				}
			}
		}
		return out
	}
	// Sparse: draw with rejection, remembering the draws in a bitset (on
	// the stack for lists of up to 16,384 records).
	var buf [256]uint64
	drawn := buf[:]
	if words := (n + 63) / 64; words > len(buf) {
		drawn = make([]uint64, words)
	}
	for got := 0; got < k; {
		i := rng.IntN(n)
		if drawn[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		drawn[i/64] |= 1 << (i % 64)
		keep(i)
		got++
	}
	return out
}

// maxLabels bounds swarm.labels against peers that invent labels.
const maxLabels = 1024

func (sw *swarm) intern(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := sw.labels[s]; ok {
		return c
	}
	if len(sw.labels) < maxLabels {
		sw.labels[s] = s
	}
	return s
}

// canonicalRole returns the package constant equal to r.
func canonicalRole(r trackerwire.Role) trackerwire.Role {
	switch r {
	case trackerwire.RoleOrigin:
		return trackerwire.RoleOrigin
	case trackerwire.RolePeer:
		return trackerwire.RolePeer
	}
	return r
}

// tombstone is what a removed record contributed to the retired counts.
type tombstone struct {
	uploaded uint64
	origin   bool
	at       time.Time
}

// tombstoneTTLs is how many TTLs a tombstone is kept.
const tombstoneTTLs = 4

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store whose records expire ttl after
// their latest announce, timed by clk. A nil clk means clock.Real(); a
// ttl of zero or less means DefaultTTL.
func NewMemory(clk clock.Clock, ttl time.Duration) *Memory {
	if clk == nil {
		clk = clock.Real()
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	m := &Memory{clock: clk, ttl: ttl, epoch: clk.Now()}
	for i := range m.shards {
		m.shards[i].swarms = make(map[chunker.Digest]*swarm)
	}
	return m
}

// TTL returns the record lifetime.
func (m *Memory) TTL() time.Duration { return m.ttl }

func (m *Memory) shard(blob chunker.Digest) *shard { return &m.shards[blob[0]%numShards] }

func (m *Memory) expired(r *Record, now time.Time) bool { return now.Sub(r.LastSeen) >= m.ttl }

// since returns t as an offset from m.epoch, for slot.seen. For
// records r, m.expired(r, now) is m.since(now)-m.since(r.LastSeen) >= m.ttl.
func (m *Memory) since(t time.Time) int64 { return int64(t.Sub(m.epoch)) }

// Announce implements Store.
func (m *Memory) Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	now := m.clock.Now()
	sh := m.shard(req.Blob)
	sh.mu.Lock()
	defer sh.mu.Unlock()

	sw := sh.swarms[req.Blob]
	var old *Record
	if sw != nil {
		if old = sw.get(req.PeerID); old != nil && m.expired(old, now) {
			sw.remove(old, now)
			old = nil
		}
	}
	if req.Event == trackerwire.EventStopped {
		if old != nil {
			sw.remove(old, now)
		}
		if sw != nil && sw.len() == 0 && len(sw.gone) == 0 {
			delete(sh.swarms, req.Blob)
		}
		return Result{Removed: old != nil}, nil
	}
	if sw != nil && sw.numChunks != req.NumChunks {
		// The live peers decide; a swarm of expired records yields.
		m.expireSwarm(sw, now, false)
		if sw.len() > 0 {
			return Result{}, &conflictError{blob: req.Blob, have: sw.numChunks, got: req.NumChunks}
		}
		delete(sh.swarms, req.Blob)
		sw = nil
	}
	created := sw == nil
	if created {
		sw = &swarm{numChunks: req.NumChunks, index: make(map[string]int), gone: make(map[string]tombstone), labels: make(map[string]string)}
	}

	var rec *Record
	alloc := func(n int) (bf trackerwire.Bitfield) {
		rec, bf = newRecord(n)
		return bf
	}
	bf, have, ok := sw.bitfield(old, req, alloc)
	if !ok {
		// Leave no empty swarm behind.
		return Result{NeedFull: true}, nil
	}
	if rec == nil {
		if len(bf) <= maxInlineBitfield && !sw.isFull(bf) {
			// Unchanged: a copy beside the new record still beats
			// sharing the old one's.
			bf = append(alloc(len(bf))[:0], bf...)
		} else {
			rec = new(Record)
		}
	}
	if created {
		sh.swarms[req.Blob] = sw
	}
	*rec = Record{
		PeerID:                req.PeerID,
		Addrs:                 req.Addrs,
		Role:                  canonicalRole(req.Role),
		Zone:                  sw.intern(req.Zone),
		Rack:                  sw.intern(req.Rack),
		NumChunks:             req.NumChunks,
		Bitfield:              bf,
		Have:                  have,
		Complete:              req.Complete,
		Uploaded:              req.Uploaded,
		Downloaded:            req.Downloaded,
		DownloadedFromOrigins: req.DownloadedFromOrigins,
		Manifest:              req.Manifest,
		JoinedAt:              now,
		LastSeen:              now,
	}
	if old != nil {
		rec.JoinedAt = old.JoinedAt
		rec.PeerID = old.PeerID // keep one copy
		if req.Uploaded < old.Uploaded {
			// The peer restarted its counters: keep what it had reported.
			sw.retire(old)
		}
	} else if t, ok := sw.gone[req.PeerID]; ok {
		delete(sw.gone, req.PeerID)
		if t.origin == rec.IsOrigin() && req.Uploaded >= t.uploaded {
			// The peer is back with its counters running on: its new
			// record counts what was retired.
			sw.unretire(t)
		}
	}
	if old != nil && slices.Equal(old.Addrs, req.Addrs) {
		rec.Addrs = old.Addrs // the common case: keep one copy
	} else {
		rec.Addrs = slices.Clone(req.Addrs) // never share the caller's slice
	}
	sw.put(old, rec, m.since(now))
	return Result{Record: rec, Created: old == nil}, nil
}

// maxInlineBitfield is the largest bitfield newRecord allocates with its
// record (2,048 chunks).
const maxInlineBitfield = 256

// linePad starts an inline bitfield on a 64-byte boundary of its
// allocation (a cache line, when the allocation is aligned), so that it
// spans as few lines as it can. The padding fits in the size classes the
// allocations fall in anyway.
const linePad = (64 - unsafe.Sizeof(Record{})%64) % 64

// newRecord returns a zero record and a zero bitfield of n bytes, in one
// allocation if n is at most maxInlineBitfield: handouts read a record
// and its bitfield together, and in a large swarm each separate
// allocation read costs a cache miss and a TLB miss.
func newRecord(n int) (*Record, trackerwire.Bitfield) {
	switch {
	case n <= 32:
		return withBits(n, func(b *[32]byte) []byte { return b[:] })
	case n <= 64:
		return withBits(n, func(b *[64]byte) []byte { return b[:] })
	case n <= 128:
		return withBits(n, func(b *[128]byte) []byte { return b[:] })
	case n <= maxInlineBitfield:
		return withBits(n, func(b *[maxInlineBitfield]byte) []byte { return b[:] })
	}
	return new(Record), make(trackerwire.Bitfield, n)
}

// withBits allocates a record followed by an array B of bytes, and
// returns the record and the first n bytes of the array.
func withBits[B any](n int, slice func(*B) []byte) (*Record, trackerwire.Bitfield) {
	x := new(struct {
		r    Record
		_    [linePad]byte
		bits B
	})
	return &x.r, slice(&x.bits)[:n:n]
}

// isFull reports whether bf is sw.full.
func (sw *swarm) isFull(bf trackerwire.Bitfield) bool {
	return len(bf) > 0 && len(sw.full) > 0 && &bf[0] == &sw.full[0]
}

// bitfield returns the bitfield and count for the new record, or ok=false
// if req is a delta with nothing to apply it to. A new bitfield comes
// from alloc (zeroed, n bytes); otherwise it is shared with old or
// sw.full.
func (sw *swarm) bitfield(old *Record, req *trackerwire.AnnounceRequest, alloc func(n int) trackerwire.Bitfield) (bf trackerwire.Bitfield, have uint32, ok bool) {
	clone := func(b trackerwire.Bitfield) trackerwire.Bitfield {
		c := alloc(len(b))
		copy(c, b)
		return c
	}
	switch {
	case req.Complete:
		if sw.full == nil {
			sw.full = trackerwire.FullBitfield(sw.numChunks)
		}
		return sw.full, sw.numChunks, true
	case req.Bitfield != nil:
		if old != nil && bytes.Equal(old.Bitfield, req.Bitfield) {
			return old.Bitfield, old.Have, true
		}
		bf = clone(req.Bitfield)
		return bf, uint32(bf.Count()), true
	default: // delta
		if old == nil {
			return nil, 0, false
		}
		bf, have = old.Bitfield, old.Have
		if req.Delta == nil {
			return bf, have, true
		}
		copied := false
		for _, i := range req.Delta.Added {
			if bf.Has(i) {
				continue
			}
			if !copied {
				bf, copied = clone(bf), true
			}
			bf.Set(i)
			have++
		}
		return bf, have, true
	}
}

func (sw *swarm) len() int { return len(sw.peers) + len(sw.origins) }

func (sw *swarm) get(peerID string) *Record {
	i, ok := sw.index[peerID]
	switch {
	case !ok:
		return nil
	case i >= 0:
		return sw.peers[i].rec
	default:
		return sw.origins[-1-i].rec
	}
}

// put replaces old (nil if none) with rec, which has the same peer ID and
// was seen at seen (see members).
func (sw *swarm) put(old, rec *Record, seen int64) {
	if old != nil && old.IsOrigin() == rec.IsOrigin() {
		i := sw.index[rec.PeerID]
		if i >= 0 {
			sw.peers[i] = slot{rec, seen}
		} else {
			sw.origins[-1-i] = slot{rec, seen}
		}
		return
	}
	if old != nil {
		sw.drop(old)
	}
	if rec.IsOrigin() {
		sw.index[rec.PeerID] = -1 - sw.origins.add(rec, seen)
	} else {
		sw.index[rec.PeerID] = sw.peers.add(rec, seen)
	}
}

// retire adds r's upload count to the swarm's history.
func (sw *swarm) retire(r *Record) {
	if r.IsOrigin() {
		sw.retiredOrigins += r.Uploaded
	} else {
		sw.retiredPeers += r.Uploaded
	}
}

func (sw *swarm) unretire(t tombstone) {
	if t.origin {
		sw.retiredOrigins -= t.uploaded
	} else {
		sw.retiredPeers -= t.uploaded
	}
}

// remove retires r, leaves a tombstone, and drops it.
func (sw *swarm) remove(r *Record, now time.Time) {
	sw.retire(r)
	sw.gone[r.PeerID] = tombstone{uploaded: r.Uploaded, origin: r.IsOrigin(), at: now}
	sw.drop(r)
}

// drop deletes r from its list and the index; the last record of the
// list takes its slot.
func (sw *swarm) drop(r *Record) {
	i := sw.index[r.PeerID]
	delete(sw.index, r.PeerID)
	if i >= 0 {
		if moved := sw.peers.remove(i); moved != nil {
			sw.index[moved.PeerID] = i
		}
		return
	}
	if moved := sw.origins.remove(-1 - i); moved != nil {
		sw.index[moved.PeerID] = i
	}
}

// expireSwarm removes sw's expired records and returns how many. With
// tombstones set it also forgets old tombstones.
func (m *Memory) expireSwarm(sw *swarm, now time.Time, tombstones bool) int {
	n := 0
	minSeen := m.since(now) - int64(m.ttl)
	for _, list := range []*members{&sw.peers, &sw.origins} {
		// Walk backwards: drop moves the last record into the hole.
		for i := len(*list) - 1; i >= 0; i-- {
			if s := (*list)[i]; s.seen <= minSeen {
				sw.remove(s.rec, now)
				n++
			}
		}
	}
	if tombstones {
		for id, t := range sw.gone {
			if now.Sub(t.at) >= tombstoneTTLs*m.ttl {
				delete(sw.gone, id)
			}
		}
	}
	return n
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, blob chunker.Digest, peerID string) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.clock.Now()
	sh := m.shard(blob)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if sw := sh.swarms[blob]; sw != nil {
		if r := sw.get(peerID); r != nil && !m.expired(r, now) {
			return r, nil
		}
	}
	return nil, notFound(blob)
}

// Candidates implements Store.
func (m *Memory) Candidates(ctx context.Context, blob chunker.Digest, q CandidateQuery) ([]*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.clock.Now()
	sh := m.shard(blob)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	sw := sh.swarms[blob]
	if sw == nil {
		return nil, notFound(blob)
	}
	// Compare records, not peer IDs: in a large swarm each string
	// comparison is a cache miss.
	var exclude *Record
	if q.Exclude != "" {
		exclude = sw.get(q.Exclude)
	}
	minSeen := m.since(now) - int64(m.ttl)
	out := make([]*Record, 0, bound(len(sw.origins), q.MaxOrigins)+bound(len(sw.peers), q.MaxPeers))
	out = sw.origins.sample(out, q.MaxOrigins, q.Rand, minSeen, exclude)
	out = sw.peers.sample(out, q.MaxPeers, q.Rand, minSeen, exclude)
	return out, nil
}

func bound(n, max int) int {
	if max > 0 && max < n {
		return max
	}
	return n
}

// Swarm implements Store.
func (m *Memory) Swarm(ctx context.Context, blob chunker.Digest) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.clock.Now()
	sh := m.shard(blob)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	sw := sh.swarms[blob]
	if sw == nil {
		return nil, notFound(blob)
	}
	s := &Snapshot{
		Blob:              blob,
		NumChunks:         sw.numChunks,
		UploadedByOrigins: sw.retiredOrigins,
		UploadedByPeers:   sw.retiredPeers,
		Records:           make([]*Record, 0, sw.len()),
	}
	agree := true
	for _, o := range sw.origins {
		r := o.rec
		s.UploadedByOrigins += r.Uploaded
		if !m.expired(r, now) {
			s.Records = append(s.Records, r)
			switch {
			case r.Manifest.IsZero():
			case s.Manifest.IsZero():
				s.Manifest = r.Manifest
			case s.Manifest != r.Manifest:
				agree = false
			}
		}
	}
	if !agree {
		s.Manifest = chunker.Digest{}
	}
	for _, p := range sw.peers {
		r := p.rec
		s.UploadedByPeers += r.Uploaded
		if !m.expired(r, now) {
			s.Records = append(s.Records, r)
		}
	}
	if len(s.Records) == 0 {
		return nil, notFound(blob)
	}
	slices.SortFunc(s.Records, func(a, b *Record) int { return cmp.Compare(a.PeerID, b.PeerID) })
	return s, nil
}

// Swarms implements Store.
func (m *Memory) Swarms(ctx context.Context) ([]Summary, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.clock.Now()
	var out []Summary
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for blob, sw := range sh.swarms {
			s := Summary{Blob: blob, NumChunks: sw.numChunks}
			for _, o := range sw.origins {
				if !m.expired(o.rec, now) {
					s.Origins++
				}
			}
			for _, p := range sw.peers {
				if r := p.rec; !m.expired(r, now) {
					s.Peers++
					if r.Complete {
						s.Complete++
					}
				}
			}
			s.Peers += s.Origins
			if s.Peers > 0 {
				out = append(out, s)
			}
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b Summary) int { return bytes.Compare(a.Blob[:], b.Blob[:]) })
	return out, nil
}

// Expire implements Store.
func (m *Memory) Expire(ctx context.Context) (int, error) {
	n := 0
	for i := range m.shards {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		now := m.clock.Now()
		sh := &m.shards[i]
		sh.mu.Lock()
		for blob, sw := range sh.swarms {
			n += m.expireSwarm(sw, now, true)
			if sw.len() == 0 && len(sw.gone) == 0 {
				delete(sh.swarms, blob)
			}
		}
		sh.mu.Unlock()
	}
	return n, nil
}

// Stats implements Store.
func (m *Memory) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var s Stats
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, sw := range sh.swarms {
			if n := sw.len(); n > 0 {
				s.Swarms++
				s.Peers += n
			}
		}
		sh.mu.RUnlock()
	}
	return s, nil
}
