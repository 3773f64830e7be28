package sim

// kind says what an event does; see the handlers in sim.go and net.go.
type kind uint8

const (
	evJoin     kind = iota + 1 // a peer starts (h)
	evAnnounce                 // h announces to the tracker (gen: h.annGen)
	evDialDone                 // h's dial of idx completes (gen: h.epoch)
	evRequest                  // a request reaches the uploader (conn h, side k)
	evReject                   // a rejection reaches the downloader
	evCancel                   // a cancel reaches the uploader
	evData                     // a chunk's last byte reaches the downloader
	evHave                     // h's Have for chunk idx reaches its neighbours (gen: h.epoch)
	evTick                     // h's scheduler is due a Tick (gen: h.epoch)
	evFlowDone                 // the upload at the head of pipe k of connection h ends
	evProgress                 // check whether request id, flowing on pipe k of connection h, has sent a piece since its downloader last heard
	evClose                    // connection h (gen) is dropped after a ban
	evScenario                 // scenario event idx
	evSample                   // a sample of the time series is due
)

// event is one entry of the event queue, kept small and pointer-free: h
// is a host or a connection index depending on kind, gen guards against
// the host or connection having changed since the event was queued.
type event struct {
	at     int64  // virtual time, ns since the start
	seq    uint64 // insertion order: ties are broken FIFO, so runs are reproducible
	h      int32
	gen    uint32
	id     uint32
	idx    int32
	kind   kind
	k      uint8 // side of the connection: the uploader's
	reason uint8 // evReject: the sched.FailReason; evRequest: 1 if escalated
}

// queue is a 4-ary min-heap of events ordered by (at, seq), typed rather
// than container/heap, whose interface calls are slow in the hottest loop.
// A transfer's completion (evFlowDone) is indexed: its pipe knows its
// position (pipe.heapPos), so that a transfer whose rate changes is moved
// rather than queued again. (at, seq) is unique, so the order events come
// out in does not depend on the heap's shape. Four children a node halve
// the depth of a binary heap, and sifting moves a hole rather than
// swapping, so that an indexed event's pipe, a cache miss away, is
// updated once per event moved rather than twice per level.
type queue struct {
	ev    []event
	seq   uint64
	conns *[]conn
}

func (q *queue) len() int { return len(q.ev) }

// arity is the number of children of a node of the heap.
const arity = 4

func (q *queue) push(e event) {
	q.seq++
	e.seq = q.seq
	q.ev = append(q.ev, e)
	if !q.up(len(q.ev) - 1) {
		q.moved(len(q.ev) - 1)
	}
}

func (q *queue) pop() event {
	top := q.ev[0]
	q.remove(0)
	return top
}

// remove takes out the event at position i.
func (q *queue) remove(i int) {
	if e := &q.ev[i]; e.kind == evFlowDone {
		q.pipe(e).heapPos = -1
	}
	last := len(q.ev) - 1
	if i != last {
		q.ev[i] = q.ev[last]
	}
	q.ev = q.ev[:last]
	if i < last && !q.fix(i) {
		q.moved(i)
	}
}

// reschedule moves the event at position i to at, behind the events
// already queued for that time.
func (q *queue) reschedule(i int, at int64) {
	q.seq++
	q.ev[i].at, q.ev[i].seq = at, q.seq
	q.fix(i) // the event's position is recorded already if it stays
}

func (q *queue) pipe(e *event) *pipe { return &(*q.conns)[e.h].pipes[e.k] }

// moved records the new position of the event at i if it is indexed.
func (q *queue) moved(i int) {
	if e := &q.ev[i]; e.kind == evFlowDone {
		q.pipe(e).heapPos = int32(i)
	}
}

// fix restores the heap after the event at i changed, and reports
// whether it moved (the positions of the events it moved are recorded).
func (q *queue) fix(i int) bool {
	return q.up(i) || q.down(i)
}

func before(a, b *event) bool {
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

// up moves the event at i towards the root while it comes before its
// parent, and reports whether it moved.
func (q *queue) up(i int) bool {
	e := q.ev[i]
	start := i
	for i > 0 {
		p := (i - 1) / arity
		if !before(&e, &q.ev[p]) {
			break
		}
		q.ev[i] = q.ev[p]
		q.moved(i)
		i = p
	}
	if i == start {
		return false
	}
	q.ev[i] = e
	q.moved(i)
	return true
}

// down moves the event at i towards the leaves while a child comes before
// it, and reports whether it moved.
func (q *queue) down(i int) bool {
	n := len(q.ev)
	e := q.ev[i]
	start := i
	for {
		c := arity*i + 1
		if c >= n {
			break
		}
		m := c
		for j := c + 1; j < min(c+arity, n); j++ {
			if before(&q.ev[j], &q.ev[m]) {
				m = j
			}
		}
		if !before(&q.ev[m], &e) {
			break
		}
		q.ev[i] = q.ev[m]
		q.moved(i)
		i = m
	}
	if i == start {
		return false
	}
	q.ev[i] = e
	q.moved(i)
	return true
}

// reqList is a list of requests (a pipe's queue or want) kept in a block
// of lists; b is -1 for an empty list, which holds no block.
type reqList struct {
	b int32
	n uint16
}

var noList = reqList{b: -1}

type reqID struct {
	id  uint32
	idx int32
}

// lists is a slab of fixed-size blocks for reqLists: pointer-free, and
// only the pipes with requests outstanding hold one.
type lists struct {
	blk  int
	mem  []reqID
	free []int32
}

func (l *lists) items(r reqList) []reqID {
	if r.b < 0 {
		return nil
	}
	o := int(r.b) * l.blk
	return l.mem[o : o+int(r.n)]
}

func (l *lists) head(r reqList) reqID { return l.mem[int(r.b)*l.blk] }

// add appends x to r; false if r is full.
func (l *lists) add(r *reqList, x reqID) bool {
	if r.b < 0 {
		if k := len(l.free); k > 0 {
			r.b = l.free[k-1]
			l.free = l.free[:k-1]
		} else {
			r.b = int32(len(l.mem) / l.blk)
			l.mem = append(l.mem, make([]reqID, l.blk)...)
		}
	}
	if int(r.n) == l.blk {
		return false
	}
	l.mem[int(r.b)*l.blk+int(r.n)] = x
	r.n++
	return true
}

func (l *lists) removeAt(r *reqList, j int) {
	s := l.items(*r)
	copy(s[j:], s[j+1:])
	r.n--
	if r.n == 0 {
		l.clear(r)
	}
}

// removeID removes the request with ID id; false if there is none.
func (l *lists) removeID(r *reqList, id uint32) bool {
	for j, x := range l.items(*r) {
		if x.id == id {
			l.removeAt(r, j)
			return true
		}
	}
	return false
}

// removeIdx removes the request for chunk idx and returns it.
func (l *lists) removeIdx(r *reqList, idx int32) (reqID, bool) {
	for j, x := range l.items(*r) {
		if x.idx == idx {
			l.removeAt(r, j)
			return x, true
		}
	}
	return reqID{}, false
}

func (l *lists) clear(r *reqList) {
	if r.b >= 0 {
		l.free = append(l.free, r.b)
	}
	*r = noList
}
