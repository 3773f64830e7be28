package trackerbench

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// fleet is the load generator's view of the peers: for every (peer, blob)
// record, the chunks the peer holds and its counters, which it changes
// the way a downloading peer's Announcer would report them. Record j is
// peer j/blobs in the swarm of blob j%blobs. The first Origins peers are
// origins: complete, in every swarm.
type fleet struct {
	peers, blobs int
	chunks       uint32
	origins      int
	blobIDs      []chunker.Digest
	peerIDs      []string
	addrs        [][]string
	zones, racks []string
	// blobHead, peerMid and peerTail are the constant parts of each
	// request body.
	blobHead, peerMid, peerTail [][]byte
	recs                        []record
	// maxConns is each peer's outbound connection cap (negative: peers
	// send no num_want); conns counts each peer's connections, over all
	// its blobs, as the engine does.
	maxConns int32
	conns    []atomic.Int32
	// order is the order records are announced in: a random
	// permutation, the same in every phase, so that a record's announces
	// are one period apart.
	order []int32
}

// record is the generator's state of one (peer, blob) record. The worker
// announcing it holds mu for the whole request, as a peer's Announcer
// sends one announce at a time.
type record struct {
	mu         sync.Mutex
	bf         trackerwire.Bitfield // nil for origins
	have       uint32
	uploaded   uint64
	downloaded uint64
	// acked: the tracker holds the bitfield (the last announce was
	// answered without NeedFull); started: an announce was answered.
	acked, started, completeAcked bool
}

// Topology labels: peers spread over numZones zones of racksPerZone
// racks.
const (
	numZones     = 3
	racksPerZone = 20
	// maxAdded is the most chunks a delta adds: a peer announcing every
	// few seconds while it downloads 1 MiB chunks at a few MB/s.
	maxAdded = 4
	// connLoss is the chance that a peer lost one of its connections
	// since its previous announce of a blob (a peer left, a dial failed,
	// a session was banned), so that it asks for one more.
	connLoss = 0.1
)

func newFleet(o Options) *fleet {
	rng := rand.New(rand.NewPCG(o.Seed, 0x7261636b))
	f := &fleet{
		peers: o.Peers, blobs: o.Blobs, chunks: uint32(o.Chunks), origins: o.Origins,
		blobIDs: make([]chunker.Digest, o.Blobs), blobHead: make([][]byte, o.Blobs),
		peerIDs: make([]string, o.Peers), addrs: make([][]string, o.Peers),
		peerMid: make([][]byte, o.Peers), peerTail: make([][]byte, o.Peers),
		zones: make([]string, o.Peers), racks: make([]string, o.Peers),
		recs: make([]record, o.Peers*o.Blobs), order: make([]int32, o.Peers*o.Blobs),
		maxConns: int32(o.MaxConns), conns: make([]atomic.Int32, o.Peers),
	}
	for b := range f.blobIDs {
		f.blobIDs[b] = chunker.Sum(fmt.Appendf(nil, "trackerbench blob %d seed %d", b, o.Seed))
		f.blobHead[b] = fmt.Appendf(nil, `{"blob":%q`, f.blobIDs[b].String())
	}
	for p := range f.peerIDs {
		// The shape of a libp2p Ed25519 peer ID and a TCP multiaddr.
		f.peerIDs[p] = fmt.Sprintf("12D3KooW%044d", p)
		f.addrs[p] = []string{fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", p>>16&0xff, p>>8&0xff, p&0xff)}
		z := p % numZones
		f.zones[p] = "zone-" + strconv.Itoa(z)
		f.racks[p] = fmt.Sprintf("zone-%d-rack-%d", z, p/numZones%racksPerZone)
		f.peerMid[p] = fmt.Appendf(nil, `,"peer_id":%q,"addrs":[%q],"role":%q,"num_chunks":%d`, f.peerIDs[p], f.addrs[p][0], f.role(p), f.chunks)
		f.peerTail[p] = fmt.Appendf(nil, `,"zone":%q,"rack":%q`, f.zones[p], f.racks[p])
	}
	for j := range f.recs {
		if f.isOrigin(j / f.blobs) {
			continue
		}
		r := &f.recs[j]
		r.bf = trackerwire.NewBitfield(f.chunks)
		for i := range f.chunks {
			if rng.IntN(2) == 0 {
				r.bf.Set(i)
				r.have++
			}
		}
		r.downloaded = uint64(r.have) << 20
	}
	for i := range f.order {
		f.order[i] = int32(i)
	}
	rng.Shuffle(len(f.order), func(a, b int) { f.order[a], f.order[b] = f.order[b], f.order[a] })
	return f
}

func (f *fleet) records() int { return len(f.recs) }

func (f *fleet) isOrigin(peer int) bool { return peer < f.origins }

func (f *fleet) role(peer int) trackerwire.Role {
	if f.isOrigin(peer) {
		return trackerwire.RoleOrigin
	}
	return trackerwire.RolePeer
}

// announce is one announce of record j, as its Announcer would build it.
type announce struct {
	j        int
	bitfield bool // send the full bitfield
	delta    bool // send added as a delta
	added    []uint32
	complete bool
	event    trackerwire.Event
	uploaded uint64
	down     uint64
	numWant  int // negative: not sent
}

// next advances record j (whose mu the caller holds) by one announce
// period and returns its announce in a, reusing a.added. A record whose
// bitfield the tracker does not hold sends it in full; otherwise the
// chunks it gained since, as a delta, like trackerclient.Announcer. It
// asks for as many peers as the peer's engine would dial (see
// numWant).
func (f *fleet) next(j int, rng *rand.Rand, a *announce) {
	r := &f.recs[j]
	*a = announce{j: j, added: a.added[:0]}
	defer func() { a.numWant = f.numWant(j/f.blobs, a.complete, rng) }()
	if !r.started {
		a.event = trackerwire.EventStarted
	}
	if r.bf == nil { // an origin
		a.complete = true
		return
	}
	if r.acked {
		for range rng.IntN(maxAdded + 1) {
			if r.have == f.chunks {
				break
			}
			i := uint32(rng.IntN(int(f.chunks)))
			for r.bf.Has(i) { // the next missing chunk
				i = (i + 1) % f.chunks
			}
			r.bf.Set(i)
			r.have++
			a.added = append(a.added, i)
		}
		r.downloaded += uint64(len(a.added)) << 20
		r.uploaded += uint64(rng.IntN(maxAdded+1)) << 20
	}
	a.uploaded, a.down = r.uploaded, r.downloaded
	switch {
	case r.have == f.chunks:
		a.complete = true
		if r.started && !r.completeAcked {
			a.event = trackerwire.EventCompleted
		}
	case r.acked:
		a.delta = true
	default:
		a.bitfield = true
	}
}

// numWant is what peer's engine asks for, as peer.Engine does: none
// for a complete blob, whose hand-out it ignores, else its free outbound
// slots, after it lost a connection with probability connLoss.
func (f *fleet) numWant(peer int, complete bool, rng *rand.Rand) int {
	switch {
	case f.maxConns < 0:
		return -1
	case complete:
		return 0
	}
	c := &f.conns[peer]
	if rng.Float64() < connLoss {
		for n := c.Load(); n > 0 && !c.CompareAndSwap(n, n-1); n = c.Load() {
		}
	}
	return int(max(f.maxConns-c.Load(), 0))
}

// answered records the tracker's answer to a: needFull, or an error
// (ok false), after which the next announce sends the full bitfield; or
// the peers handed out, which the peer connects to, up to its cap.
func (f *fleet) answered(a *announce, ok, needFull bool, peers int) {
	r := &f.recs[a.j]
	if !ok {
		r.acked = false
		return
	}
	if a.numWant > 0 && peers > 0 {
		c := &f.conns[a.j/f.blobs]
		for n := c.Load(); !c.CompareAndSwap(n, min(n+int32(peers), f.maxConns)); n = c.Load() {
		}
	}
	r.started = true
	r.acked = !needFull
	r.completeAcked = a.complete && !needFull
}

// appendJSON appends the request body of a to b: the bytes that
// json.Marshal makes of request(a), as trackerclient sends them, without
// the cost.
func (f *fleet) appendJSON(b []byte, a *announce) []byte {
	peer, blob := a.j/f.blobs, a.j%f.blobs
	b = append(b, f.blobHead[blob]...)
	b = append(b, f.peerMid[peer]...)
	if a.bitfield {
		bf := f.recs[a.j].bf
		b = append(b, `,"bitfield":"`...)
		b = base64.StdEncoding.AppendEncode(b, bf)
		b = append(b, '"')
	}
	if a.delta {
		b = append(b, `,"delta":{"added":[`...)
		for i, c := range a.added {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(c), 10)
		}
		b = append(b, "]}"...)
	}
	if a.complete {
		b = append(b, `,"complete":true`...)
	}
	b = append(b, `,"uploaded":`...)
	b = strconv.AppendUint(b, a.uploaded, 10)
	b = append(b, `,"downloaded":`...)
	b = strconv.AppendUint(b, a.down, 10)
	b = append(b, f.peerTail[peer]...)
	if a.event != trackerwire.EventNone {
		b = append(b, `,"event":"`...)
		b = append(b, a.event...)
		b = append(b, '"')
	}
	if a.numWant >= 0 {
		b = append(b, `,"num_want":`...)
		b = strconv.AppendInt(b, int64(a.numWant), 10)
	}
	return append(b, '}')
}

// request returns a as a trackerwire request. Its slices are the
// record's: use it before the record changes.
func (f *fleet) request(a *announce) *trackerwire.AnnounceRequest {
	peer, blob := a.j/f.blobs, a.j%f.blobs
	req := &trackerwire.AnnounceRequest{
		Blob: f.blobIDs[blob], PeerID: f.peerIDs[peer], Addrs: f.addrs[peer], Role: f.role(peer),
		NumChunks: f.chunks, Complete: a.complete, Uploaded: a.uploaded, Downloaded: a.down,
		Zone: f.zones[peer], Rack: f.racks[peer], Event: a.event,
	}
	if a.bitfield {
		req.Bitfield = f.recs[a.j].bf
	}
	if a.delta {
		// Never nil, as trackerclient's deltas, which encode as [].
		req.Delta = &trackerwire.Delta{Added: append([]uint32{}, a.added...)}
	}
	if a.numWant >= 0 {
		req.NumWant = trackerwire.WantPeers(a.numWant)
	}
	return req
}
