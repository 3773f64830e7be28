package sched

import (
	"fmt"
	"strconv"
)

// Event is something that happened, fed to Scheduler.Handle. It is one of
// PeerConnected, PeerDisconnected, PeerHave, PeerBitfield, ChunkProgress,
// ChunkReceived, RequestFailed, Tick and ChunkStoredLocally; the set is
// closed.
//
// Events naming an unknown (never connected, disconnected or banned) peer or
// a chunk index outside the manifest are ignored, except that a verified
// chunk is accepted from anyone and a corrupt one counts against the peer
// ID even after it disconnected.
type Event interface{ isEvent() }

// PeerConnected: a connection to Peer is up. Have is the chunks it
// advertises (length 0 means none; bits past the manifest are ignored).
// Origin marks an origin, a seeder of last resort (see OriginPolicy). A
// second PeerConnected for a connected peer replaces the connection, as a
// disconnect followed by a connect would. A banned peer stays banned: the
// answer is another Ban action. Tag is the driver's own: the scheduler
// copies it into the Requests and Cancels for this connection (a simulator
// keeps its connection's index there).
type PeerConnected struct {
	Peer   string
	Origin bool
	Have   Bitset
	Tag    uint32
}

// PeerDisconnected: the connection to Peer is gone. Its outstanding
// requests are forgotten (no Cancel is sent) and their chunks requested
// elsewhere.
type PeerDisconnected struct{ Peer string }

// PeerHave: Peer announced that it now holds chunk Index.
type PeerHave struct {
	Peer  string
	Index int
}

// PeerBitfield: Peer replaced its whole advertisement with Have (a peer that
// evicted chunks sends one).
type PeerBitfield struct {
	Peer string
	Have Bitset
}

// ChunkProgress: part of the requested chunk Index arrived from Peer (a
// Data frame), so the peer is answering that request. If it is the oldest
// request outstanding at Peer, its timeout clock restarts (see
// Config.RequestTimeout); otherwise nothing changes. An engine need not
// send one per frame: one every fraction of RequestTimeout while a chunk
// is arriving is enough.
type ChunkProgress struct {
	Peer  string
	Index int
}

// ChunkReceived: Peer sent chunk Index. Verified reports whether its SHA-256
// matched the manifest; the scheduler never sees the data. A verified chunk
// that is still missing is accepted even if it was not (or no longer)
// requested from Peer. A corrupt chunk is requested again elsewhere and
// counts against Peer (see Config.BanThreshold).
type ChunkReceived struct {
	Peer     string
	Index    int
	Verified bool
}

// FailReason says why a peer rejected a request.
type FailReason uint8

const (
	// FailError is any other failure; the chunk is requested elsewhere and
	// this peer is avoided for it. It counts towards
	// Config.OriginAfterFailures.
	FailError FailReason = iota
	// FailBusy: the peer is overloaded. It gets no new requests for a
	// while (Config.BusyBackoff); the chunk is requested again at once,
	// from it or elsewhere. A busy answer says nothing about the chunk, so
	// it is no failure of the chunk.
	FailBusy
	// FailNotFound: the peer does not have the chunk after all; its
	// advertisement is corrected, and the chunk is requested elsewhere.
	// It is no failure of the chunk either: the peer no longer counts as
	// a holder.
	FailNotFound
	// FailDeferred: the peer, an origin, sent the chunk to another peer a
	// moment ago and wants it fetched from there (peer.Config.ResendWindow).
	// The origin is asked for other chunks at once, and for this one
	// again only after Config.DeferBackoff, unless a peer advertises it
	// meanwhile. It is no failure of the chunk. From a peer that is not a
	// fallback origin it counts as FailBusy.
	FailDeferred
)

func (r FailReason) String() string {
	switch r {
	case FailError:
		return "error"
	case FailBusy:
		return "busy"
	case FailNotFound:
		return "notfound"
	case FailDeferred:
		return "deferred"
	}
	return "FailReason(" + strconv.Itoa(int(r)) + ")"
}

// RequestFailed: Peer rejected the request for chunk Index. FailError
// answers from peers (not from fallback origins) count towards
// Config.OriginAfterFailures.
type RequestFailed struct {
	Peer   string
	Index  int
	Reason FailReason
}

// Tick lets time pass: the requests of peers that stalled for
// Config.RequestTimeout time out, and busy peers' pauses end. Nothing else looks at the clock. A
// driver sends a Tick at Scheduler.NextTick (or simply every second or so).
type Tick struct{}

// ChunkStoredLocally: chunk Index became available without a request, e.g.
// another blob being fetched contains the same chunk. Outstanding requests
// for it are cancelled.
type ChunkStoredLocally struct{ Index int }

func (PeerConnected) isEvent()      {}
func (PeerDisconnected) isEvent()   {}
func (PeerHave) isEvent()           {}
func (PeerBitfield) isEvent()       {}
func (ChunkProgress) isEvent()      {}
func (ChunkReceived) isEvent()      {}
func (RequestFailed) isEvent()      {}
func (Tick) isEvent()               {}
func (ChunkStoredLocally) isEvent() {}

// ActionKind says what an Action asks the engine to do.
type ActionKind uint8

const (
	// Request chunk Index from Peer.
	Request ActionKind = iota + 1
	// Cancel the outstanding request for chunk Index at Peer: another copy
	// arrived, the chunk was stored locally, or the peer stalled.
	Cancel
	// Ban Peer: drop the connection and refuse it in future. Reason says why.
	Ban
	// Have: chunk Index is now held locally; announce it to peers.
	Have
	// Done: every chunk is held. Emitted exactly once.
	Done
)

var kindNames = [...]string{Request: "request", Cancel: "cancel", Ban: "ban", Have: "have", Done: "done"}

func (k ActionKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "ActionKind(" + strconv.Itoa(int(k)) + ")"
}

// Action is something the engine must do. It is a plain struct rather than
// a sum type so that handling an event allocates nothing: Peer is set for
// Request, Cancel and Ban, Index for Request, Cancel and Have, Reason for Ban.
type Action struct {
	Kind   ActionKind
	Peer   string
	Index  int
	Reason string
	// Escalated marks a Request to a fallback origin for a chunk that
	// the peers advertising it failed or look stalled on: the origin
	// should serve it even if it sent it to another peer a moment ago.
	Escalated bool
	// Tag is PeerConnected.Tag of the connection a Request or Cancel is
	// for.
	Tag uint32
}

// String formats a as in the golden test scripts: "request p1 3",
// "cancel p1 3", "ban p1: reason", "have 3", "done".
func (a Action) String() string {
	switch a.Kind {
	case Request, Cancel:
		return fmt.Sprintf("%s %s %d", a.Kind, a.Peer, a.Index)
	case Ban:
		return fmt.Sprintf("ban %s: %s", a.Peer, a.Reason)
	case Have:
		return fmt.Sprintf("have %d", a.Index)
	case Done:
		return "done"
	}
	return fmt.Sprintf("%s %q %d %q", a.Kind, a.Peer, a.Index, a.Reason)
}
