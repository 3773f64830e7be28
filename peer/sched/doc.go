// Package sched is the download scheduler: it decides which chunk of a
// blob to request from which peer.
//
// # A pure state machine
//
// A Scheduler is driven by events and answers with actions:
//
//	acts := s.Handle(now, sched.ChunkReceived{Peer: "p1", Index: 7, Verified: true})
//	for _, a := range acts {
//		switch a.Kind {
//		case sched.Request: // send a request for chunk a.Index to a.Peer
//		case sched.Cancel:  // withdraw it
//		case sched.Ban:     // drop a.Peer for good
//		case sched.Have:    // announce chunk a.Index to peers
//		case sched.Done:    // every chunk is held
//		}
//	}
//
// It starts no goroutines, does no I/O and never reads the clock: the time
// of every event is passed in, and timeouts are only noticed on Tick, which
// the driver sends when NextTick says something is due. So
// the real peer engine drives it from its event loop in wall-clock time,
// and a discrete-event simulator drives the very same code in virtual time,
// reproducibly given the seed of the *rand.Rand passed to New.
// HandleAppend lets a hot loop reuse one action buffer; handling an event
// then allocates nothing in the steady state. A driver that delivers many
// Haves (a simulator delivers hundreds of millions) can take a PeerRef for
// each connected peer (Ref) and use HandleHave, which neither boxes the
// event nor looks the peer up by ID.
//
// The scheduler only sees chunk indices into the manifest
// (chunker.Manifest.Chunks) and whether a received chunk's SHA-256 matched.
// Reading, verifying and storing the data are the engine's job.
//
// # Policy
//
//   - Rarest first: among the chunks a peer can serve, the one the fewest
//     connected peers advertise (PeerConnected, PeerHave, PeerBitfield) is
//     requested first. Ties are broken at random so that peers fetching the
//     same blob spread over different chunks.
//   - Pipelining: up to Config.MaxInflightPerPeer requests are outstanding
//     at one peer. A stall (below) halves its window (to no less than 1);
//     each chunk it delivers grows it back by one. Config.MaxInflight, if
//     set, caps the requests outstanding over all peers.
//   - One request per chunk, except in endgame: once at most
//     Config.EndgameThreshold chunks are missing, a peer that has nothing
//     un-requested to fetch is asked for a chunk already requested
//     elsewhere, up to Config.MaxDuplicates requests per chunk. The first
//     copy to arrive wins and the other requests are cancelled.
//   - Timeouts: a peer answers its requests in order, so only its oldest
//     outstanding request is on the clock: from when it became the oldest,
//     restarted whenever part of it arrives (ChunkProgress). A peer whose
//     oldest request waits Config.RequestTimeout has stalled: on the next
//     Tick all its requests are cancelled and the chunks requested
//     elsewhere. A deep pipeline on a slow link therefore does not time out
//     while the peer is sending. The timeout adapts to the peer: at least
//     three times its longest recent wait for data, doubled after a stall, up to
//     16 times RequestTimeout; only the oldest request of a stalled peer
//     counts as a failure. If a late answer arrives while the chunk is
//     still missing it is accepted.
//   - Suspicion: a stalled peer is suspected long before its timeout. Once
//     some data has arrived, a peer (not a fallback origin) whose oldest
//     request has waited three times the longest recent wait for data
//     over all peers (at least RequestTimeout/8) without any is suspect on
//     the next Tick: its requests stay outstanding (a late answer is
//     welcome, and the timeout still runs), but their chunks count as
//     unrequested and go to other peers at once; it gets nothing new
//     until it has none left. A chunk that only suspect peers advertise
//     may go to a fallback origin (a stalled peer may hold chunks it got
//     from the origin and passes on to nobody). Nothing counts as a
//     failure. Each download finds a stalled peer out for itself, in a
//     few of the fleet's chunk times rather than RequestTimeout; a slow
//     peer loses its chunks to faster ones the same way.
//   - Failures: a corrupt chunk (ChunkReceived with Verified false), a
//     timeout or an error (RequestFailed with FailError) sends the chunk
//     elsewhere; the peer that failed it is avoided for that chunk while
//     another peer has it. After Config.BanThreshold corrupt chunks a peer
//     is banned: a Ban action, its requests requeued, its availability
//     forgotten, and it is never asked for anything again, even if it
//     reconnects. A busy peer (FailBusy) is left alone for
//     Config.BusyBackoff, doubled for each further busy pause until it
//     delivers a chunk (at most Config.MaxBusyBackoff); a peer that does not
//     have a chunk after all (FailNotFound) loses it from its
//     advertisement. Neither is a failure of the chunk.
//   - Origins are a fallback (OriginFallback): they are asked for a chunk
//     only when no connected non-origin peer advertises it (which includes
//     a swarm with no other peers) or when it has failed
//     Config.OriginAfterFailures times on peers. Such a chunk is not
//     reserved for the origin: a peer that has it and has not failed it is
//     asked too, if it has a free slot first. While other peers are
//     connected, at most Config.MaxInflightPerOrigin requests are
//     outstanding at a fallback origin, so that its few upload slots spread
//     over many peers, which pass the chunks on. OriginAsPeer makes origins
//     ordinary peers.
//   - An origin may defer a chunk it has just sent to another peer
//     (FailDeferred): it is not asked for it again for
//     Config.DeferBackoff, and the chunk is fetched from that peer once it
//     announces it. If the origin still defers it after a suspect peer's
//     wait (above), that peer has not passed it on, and the chunk
//     escalates: the next request at the origin is marked
//     (Action.Escalated), which the origin serves.
//   - Chunks held from the start (the have argument of New) or stored
//     without a request (ChunkStoredLocally) are never requested.
//   - Done is emitted exactly once, by the event that completes the blob
//     (by the first event if New was given every chunk).
//
// # Cost
//
// Pending chunks are kept in buckets by availability, so a change in a
// chunk's availability is O(1), and picking the rarest chunk for a peer
// that advertises most of them is O(1) expected. For a peer that
// advertises few of the pending chunks the pick intersects bitsets instead,
// O(chunks/64 + candidates). Peers that advertise every chunk when they
// connect are counted once rather than per chunk, so a seeder connects in
// O(chunks/64). The peers with requests outstanding are kept in a list by
// the time their clock last started, which is always now, one list per
// timeout level, so restarting a clock moves a peer to the end of one:
// O(1). A simulator runs one Scheduler per
// simulated peer, so state is kept small: 16 bytes per chunk plus a few
// bits, and a bitset and some 250 bytes per connected peer (a bitset of up
// to 128 chunks inside those, in the same cache line as what a Have
// touches); a Scheduler for 1,000 chunks with 50 peers takes about 56 KB.
package sched
