package peerstore

import (
	"bytes"
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

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
// Each swarm keeps its records in two dense slices (origins and other
// peers) indexed by a map from peer ID, so sampling is O(sample) and a
// record costs its fields, its bitfield and one map entry. Records of
// complete peers share one all-ones bitfield per swarm.
type Memory struct {
	clock  clock.Clock
	ttl    time.Duration
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
	peers     []*Record
	origins   []*Record
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
	m := &Memory{clock: clk, ttl: ttl}
	for i := range m.shards {
		m.shards[i].swarms = make(map[chunker.Digest]*swarm)
	}
	return m
}

// TTL returns the record lifetime.
func (m *Memory) TTL() time.Duration { return m.ttl }

func (m *Memory) shard(blob chunker.Digest) *shard { return &m.shards[blob[0]%numShards] }

func (m *Memory) expired(r *Record, now time.Time) bool { return now.Sub(r.LastSeen) >= m.ttl }

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

	bf, have, ok := sw.bitfield(old, req)
	if !ok {
		// Leave no empty swarm behind.
		return Result{NeedFull: true}, nil
	}
	if created {
		sh.swarms[req.Blob] = sw
	}
	rec := &Record{
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
	sw.put(old, rec)
	return Result{Record: rec, Created: old == nil}, nil
}

// bitfield returns the bitfield and count for the new record, or ok=false
// if req is a delta with nothing to apply it to.
func (sw *swarm) bitfield(old *Record, req *trackerwire.AnnounceRequest) (bf trackerwire.Bitfield, have uint32, ok bool) {
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
		bf = req.Bitfield.Clone()
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
				bf, copied = bf.Clone(), true
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
		return sw.peers[i]
	default:
		return sw.origins[-1-i]
	}
}

// put replaces old (nil if none) with rec, which has the same peer ID.
func (sw *swarm) put(old, rec *Record) {
	if old != nil && old.IsOrigin() == rec.IsOrigin() {
		i := sw.index[rec.PeerID]
		if i >= 0 {
			sw.peers[i] = rec
		} else {
			sw.origins[-1-i] = rec
		}
		return
	}
	if old != nil {
		sw.drop(old)
	}
	if rec.IsOrigin() {
		sw.origins = append(sw.origins, rec)
		sw.index[rec.PeerID] = -len(sw.origins)
	} else {
		sw.peers = append(sw.peers, rec)
		sw.index[rec.PeerID] = len(sw.peers) - 1
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

// drop deletes r from the slices and the index by swapping the last
// record into its place.
func (sw *swarm) drop(r *Record) {
	i := sw.index[r.PeerID]
	delete(sw.index, r.PeerID)
	if i >= 0 {
		last := len(sw.peers) - 1
		if i != last {
			sw.peers[i] = sw.peers[last]
			sw.index[sw.peers[i].PeerID] = i
		}
		sw.peers[last] = nil
		sw.peers = sw.peers[:last]
		return
	}
	j := -1 - i
	last := len(sw.origins) - 1
	if j != last {
		sw.origins[j] = sw.origins[last]
		sw.index[sw.origins[j].PeerID] = -1 - j
	}
	sw.origins[last] = nil
	sw.origins = sw.origins[:last]
}

// expireSwarm removes sw's expired records and returns how many. With
// tombstones set it also forgets old tombstones.
func (m *Memory) expireSwarm(sw *swarm, now time.Time, tombstones bool) int {
	n := 0
	for _, list := range [][]*Record{sw.peers, sw.origins} {
		// Walk backwards: drop swaps the last record into the hole.
		for i := len(list) - 1; i >= 0; i-- {
			if r := list[i]; m.expired(r, now) {
				sw.remove(r, now)
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
	out := make([]*Record, 0, bound(len(sw.origins), q.MaxOrigins)+bound(len(sw.peers), q.MaxPeers))
	// Compare records, not peer IDs: in a large swarm each string
	// comparison is a cache miss.
	var exclude *Record
	if q.Exclude != "" {
		exclude = sw.get(q.Exclude)
	}
	keep := func(r *Record) {
		if r != exclude && !m.expired(r, now) {
			out = append(out, r)
		}
	}
	sample(sw.origins, q.MaxOrigins, q.Rand, keep)
	sample(sw.peers, q.MaxPeers, q.Rand, keep)
	return out, nil
}

func bound(n, max int) int {
	if max > 0 && max < n {
		return max
	}
	return n
}

// sample calls fn on k distinct records of list drawn uniformly at random,
// or on all of them if k is 0 or at least len(list).
func sample(list []*Record, k int, rng *rand.Rand, fn func(*Record)) {
	n := len(list)
	if k <= 0 || k >= n {
		for _, r := range list {
			fn(r)
		}
		return
	}
	if k > n/4 {
		// Selection sampling (Knuth's algorithm S): one pass, no memory.
		need := k
		for i, r := range list {
			if rng.IntN(n-i) < need {
				fn(r)
				if need--; need == 0 {
					return
				}
			}
		}
		return
	}
	// Sparse: draw with rejection, remembering the draws in a bitset.
	seen := make([]uint64, (n+63)/64)
	for got := 0; got < k; {
		i := rng.IntN(n)
		if seen[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		seen[i/64] |= 1 << (i % 64)
		fn(list[i])
		got++
	}
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
	for _, r := range sw.origins {
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
	for _, r := range sw.peers {
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
			for _, r := range sw.origins {
				if !m.expired(r, now) {
					s.Origins++
				}
			}
			for _, r := range sw.peers {
				if !m.expired(r, now) {
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
