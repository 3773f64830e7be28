// Package peer is the p2pd peer engine, the part of `p2pd peer` (and of
// the origin) that moves blobs: it serves the chunks in its store to
// other peers and fetches blobs from them, verifying every chunk.
//
// # Lifecycle
//
//	e, err := peer.New(cfg, peer.Deps{Store: st, Tracker: tc, Logger: lg, Registry: reg})
//	err = e.Start(ctx)                        // host up, pinned blobs seeded again
//	m, err := e.Pull(ctx, digest, peer.PullOptions{})  // fetch, verify, pin, seed
//	err = e.Seed(ctx, m)                      // serve a blob the store holds
//	err = e.Close(ctx)                        // ordered shutdown, see Close
//
// New starts nothing; Start opens the libp2p host (TCP + TLS 1.3 + yamux,
// optionally QUIC; no mDNS, DHT or relay) with an identity key kept in the
// data directory, so the peer ID survives restarts.
//
// # Data flow
//
// A Pull asks the tracker how many chunks the blob has, starts announcing
// it (a trackerclient.Announcer per blob), dials the peers the tracker
// hands out (up to Config.MaxConns) and asks them for the manifest,
// origins first. It then runs the download scheduler (package sched) with
// the chunks the store already holds marked as held: chunks shared with
// another blob, such as yesterday's backup, and chunks kept from before a
// restart are never fetched. Every received chunk is verified by
// store.Put, which refuses data that does not hash to its digest; a peer
// that sends corrupt chunks is banned by the scheduler. When every chunk
// is held the blob is read back and checked against its digest, the
// manifest is pinned, and the engine seeds the blob.
//
// Peers serve every chunk their store holds, also while they download.
// An origin keeps a flash crowd off itself two ways: few upload slots
// (Config.UploadSlots), and Config.ResendWindow, within which it sends a
// chunk to one peer only and answers the others Busy, so that they fetch
// it from that peer once it announces it. In tests five peers fetching a
// blob at once take one copy of it from the origin.
//
// # Goroutines and locks
//
// Each peer has one protocol stream (package peerwire) served by three
// goroutines: a reader that decodes frames and dispatches them, a writer
// that sends control frames ahead of upload data and applies the upload
// rate limit, and an uploader that reads requested chunks from the store
// one ahead of the writer. Each download has one goroutine that owns its
// scheduler: the sessions and the chunk verification workers only post
// events to it, and it only queues frames on the sessions, so it never
// blocks on the network. Locks are taken in the order Engine.mu, then a
// blob's mu, then a session's mu; none is held across network I/O.
package peer
