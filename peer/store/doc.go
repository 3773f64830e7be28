// Package store is the verified, content-addressed chunk store that peers
// and origins keep blob chunks in.
//
// # Layout
//
// A store owns one directory:
//
//	<dir>/LOCK                 flock(2)ed while a Store has the directory open
//	<dir>/chunks/ab/<hex>      a chunk, named by the hex of its SHA-256
//	<dir>/manifests/<hex>      a manifest's canonical encoding, named by its ID
//	<dir>/pins/<hex>           empty marker: the manifest <hex> is pinned
//	<dir>/tmp/                 files being written; emptied by Open
//
// Every file is written to tmp/, fsynced, renamed into place and its new
// directory fsynced, so after a crash a name under chunks/ or manifests/
// always holds complete, durable data, and a partial write is at most a file
// in tmp/. Put verifies the size and SHA-256 of a chunk before anything is
// written, and the in-memory index only learns of a chunk after the rename,
// so a chunk is never visible before it is complete.
//
// # Index and restart
//
// The index (digest, size, LRU position) lives in memory. Open rebuilds it
// from the directory listing and file metadata without reading chunk data:
// sizes come from stat and the LRU order from modification times, which reads
// refresh (at most once a minute per chunk). Verify re-hashes every chunk and
// drops those that no longer match. By default (Config.VerifyOnRead
// "first-read") a chunk's first read since Open does the same for that
// chunk, so torn files and bit rot from before the restart are dropped
// rather than served, while chunks written or checked in this run are not
// hashed again on every read; "always" re-hashes on every read.
//
// # Capacity and pins
//
// Config.Capacity bounds the sum of the chunks' sizes. A Put that would
// exceed it evicts least recently used chunks first, skipping every chunk
// that a pinned manifest references; if that cannot make room it fails with
// ErrCapacity. A full filesystem is a different condition, reported as
// ErrNoSpace. Pins and manifests are files too, so they survive restarts.
//
// # Concurrency
//
// A Store is safe for concurrent use. Concurrent Puts of the same chunk write
// it once; the others wait for that write. Reads and eviction may overlap: a
// read either gets the whole chunk or ErrNotFound.
package store
