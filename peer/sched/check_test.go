package sched

import (
	"fmt"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// checkInvariants recomputes the scheduler's derived state from scratch and
// reports the first inconsistency. It runs after every event in the golden
// and property tests, so a bookkeeping bug shows up at the event that
// caused it rather than as a stalled download much later.
func (s *Scheduler) checkInvariants() error {
	n := s.n
	avail := make([]int32, n)
	origins := make([]int32, n)
	nreq := make([]int, n)
	var base int32
	total, fallback := 0, 0
	for _, p := range s.peers {
		switch {
		case p.gone:
			return fmt.Errorf("peer %s is listed but gone", p.id)
		case s.byID[p.id] != p:
			return fmt.Errorf("peer %s: byID disagrees with peers", p.id)
		case p.have.Len() != n:
			return fmt.Errorf("peer %s: bitset length %d, want %d", p.id, p.have.Len(), n)
		case int(p.count) != p.have.Count():
			return fmt.Errorf("peer %s: count %d, bitset has %d", p.id, p.count, p.have.Count())
		case int(p.nreqs) != len(p.reqs):
			return fmt.Errorf("peer %s: nreqs %d, %d requests", p.id, p.nreqs, len(p.reqs))
		case p.window < 1 || int(p.window) > s.cfg.MaxInflightPerPeer:
			return fmt.Errorf("peer %s: window %d outside [1, %d]", p.id, p.window, s.cfg.MaxInflightPerPeer)
		case len(p.reqs) > s.cfg.MaxInflightPerPeer:
			return fmt.Errorf("peer %s: %d requests outstanding, limit %d", p.id, len(p.reqs), s.cfg.MaxInflightPerPeer)
		case p.dirty:
			return fmt.Errorf("peer %s still dirty after the event", p.id)
		case p.full && (p.fallback || int(p.count) != n):
			return fmt.Errorf("peer %s: full but fallback=%v count=%d", p.id, p.fallback, p.count)
		case p.fallback != (p.origin && s.cfg.OriginPolicy == OriginFallback):
			return fmt.Errorf("peer %s: fallback=%v origin=%v", p.id, p.fallback, p.origin)
		}
		if int(p.slot) >= len(s.slots) || s.slots[p.slot] != p {
			return fmt.Errorf("peer %s: not in slot %d", p.id, p.slot)
		}
		if _, ok := s.banned[p.id]; ok {
			return fmt.Errorf("peer %s is banned but connected", p.id)
		}
		switch {
		case p.full:
			base++
		case p.fallback:
			for i := range p.have.All() {
				origins[i]++
			}
		default:
			for i := range p.have.All() {
				avail[i]++
			}
		}
		seen := map[int32]bool{}
		for _, i := range p.reqs {
			if seen[i] {
				return fmt.Errorf("peer %s: chunk %d requested twice", p.id, i)
			}
			seen[i] = true
			if s.held.Has(int(i)) {
				return fmt.Errorf("peer %s: request for held chunk %d", p.id, i)
			}
			if !p.suspect {
				nreq[i]++
				total++
				if p.fallback {
					fallback++
				}
			}
		}
		if p.suspect && (len(p.reqs) == 0 || p.fallback) {
			return fmt.Errorf("peer %s suspect with %d requests, fallback %v", p.id, len(p.reqs), p.fallback)
		}
		if p.paused {
			found := false
			for _, q := range s.paused {
				found = found || q == p
			}
			if !found {
				return fmt.Errorf("peer %s paused but not in the paused list", p.id)
			}
		}
		if bit := s.pausedSlots[p.slot>>6]&(1<<(p.slot&63)) != 0; bit != p.paused {
			return fmt.Errorf("peer %s: paused %v, its slot's paused bit %v", p.id, p.paused, bit)
		}
	}
	if !slices.EqualFunc(s.peers, s.peerSlot, func(p *peer, slot int32) bool { return p.slot == slot }) {
		return fmt.Errorf("peerSlot %v disagrees with the peers' slots", s.peerSlot)
	}
	if len(s.pausedUntil) != len(s.paused) {
		return fmt.Errorf("%d pauses, %d ends", len(s.paused), len(s.pausedUntil))
	}
	for k, p := range s.paused {
		if p.gone || !p.paused || p.until != s.pausedUntil[k] {
			return fmt.Errorf("paused peer %s: gone %v, paused %v, until %v, listed until %v", p.id, p.gone, p.paused, p.until, s.pausedUntil[k])
		}
	}
	used := 0
	for _, p := range s.slots {
		if p != nil {
			used++
		}
	}
	if used != len(s.peers) || used+len(s.free) != len(s.slots) {
		return fmt.Errorf("%d slots used, %d free, %d in all, %d peers", used, len(s.free), len(s.slots), len(s.peers))
	}
	if len(s.byID) != len(s.peers) {
		return fmt.Errorf("byID has %d peers, peers %d", len(s.byID), len(s.peers))
	}
	if base != s.base {
		return fmt.Errorf("base %d, want %d", s.base, base)
	}
	if total != s.nreqs {
		return fmt.Errorf("nreqs %d, want %d", s.nreqs, total)
	}
	if fallback != s.nfallback {
		return fmt.Errorf("nfallback %d, want %d", s.nfallback, fallback)
	}
	if m := s.cfg.MaxInflight; m > 0 && total-fallback > m {
		return fmt.Errorf("%d requests outstanding at peers other than fallback origins, MaxInflight %d", total-fallback, m)
	}
	if c := s.held.Count(); c != s.nheld {
		return fmt.Errorf("nheld %d, bitset has %d", s.nheld, c)
	}
	if c := s.pending.Count(); c != s.npending {
		return fmt.Errorf("npending %d, bitset has %d", s.npending, c)
	}
	if c := s.escalated.Count(); c != s.nescalated {
		return fmt.Errorf("nescalated %d, bitset has %d", s.nescalated, c)
	}
	inBuckets := 0
	for a, b := range s.buckets {
		inBuckets += len(b)
		ne := a>>6 < len(s.nonEmpty) && s.nonEmpty[a>>6]&(1<<(uint(a)&63)) != 0
		if ne != (len(b) > 0) {
			return fmt.Errorf("bucket %d: %d chunks, nonEmpty bit %v", a, len(b), ne)
		}
	}
	if inBuckets != s.npending {
		return fmt.Errorf("%d chunks in buckets, %d pending", inBuckets, s.npending)
	}
	if len(s.inflight) != n-s.nheld-s.npending {
		return fmt.Errorf("%d chunks in flight, want %d", len(s.inflight), n-s.nheld-s.npending)
	}
	eg := s.endgame()
	for i := range n {
		c := s.chunks[i]
		if c.avail != avail[i] || c.origins != origins[i] {
			return fmt.Errorf("chunk %d: avail %d origins %d, want %d %d", i, c.avail, c.origins, avail[i], origins[i])
		}
		if int(c.nreq) != nreq[i] {
			return fmt.Errorf("chunk %d: nreq %d, want %d", i, c.nreq, nreq[i])
		}
		if c.nreq > 1 && !eg {
			return fmt.Errorf("chunk %d: %d requests outside endgame", i, c.nreq)
		}
		if int(c.nreq) > s.cfg.MaxDuplicates {
			return fmt.Errorf("chunk %d: %d requests, limit %d", i, c.nreq, s.cfg.MaxDuplicates)
		}
		held, pend := s.held.Has(i), s.pending.Has(i)
		switch {
		case held:
			if pend || c.nreq != 0 || c.pos != -1 || s.escalated.Has(i) {
				return fmt.Errorf("held chunk %d: pending=%v nreq=%d pos=%d escalated=%v", i, pend, c.nreq, c.pos, s.escalated.Has(i))
			}
			if _, ok := s.excl[int32(i)]; ok {
				return fmt.Errorf("held chunk %d has exclusions", i)
			}
		case pend:
			if c.nreq != 0 {
				return fmt.Errorf("pending chunk %d has %d requests", i, c.nreq)
			}
			if int(c.avail) >= len(s.buckets) || int(c.pos) >= len(s.buckets[c.avail]) || s.buckets[c.avail][c.pos] != int32(i) {
				return fmt.Errorf("pending chunk %d not at buckets[%d][%d]", i, c.avail, c.pos)
			}
		default:
			if c.nreq == 0 {
				return fmt.Errorf("requested chunk %d has no requests", i)
			}
			if int(c.pos) >= len(s.inflight) || s.inflight[c.pos] != int32(i) {
				return fmt.Errorf("requested chunk %d not at inflight[%d]", i, c.pos)
			}
		}
		if s.escalated.Has(i) && s.cfg.OriginPolicy != OriginFallback {
			return fmt.Errorf("chunk %d escalated under origin policy %v", i, s.cfg.OriginPolicy)
		}
		if int(c.fails) >= s.cfg.OriginAfterFailures && s.cfg.OriginPolicy == OriginFallback && !s.escalated.Has(i) && !s.held.Has(i) {
			return fmt.Errorf("chunk %d failed %d times but is not escalated", i, c.fails)
		}
		if _, ok := s.excl[int32(i)]; ok && c.fails == 0 {
			return fmt.Errorf("chunk %d has exclusions but no failures", i)
		}
	}
	// The stall lists hold exactly the peers with requests outstanding,
	// once each, on the list of their level, by since, and none of them has
	// stalled unnoticed before the last Tick... (that is checked by the
	// property tests' model).
	listed := map[*peer]bool{}
	for l := range s.stallHead {
		var prev *peer
		for p := s.stallHead[l]; p != nil; p = p.next {
			switch {
			case listed[p]:
				return fmt.Errorf("peer %s twice on the stall lists", p.id)
			case p.gone || s.byID[p.id] != p:
				return fmt.Errorf("peer %s on the stall list is not connected", p.id)
			case len(p.reqs) == 0:
				return fmt.Errorf("peer %s on the stall list has no requests", p.id)
			case int(p.level) != l:
				return fmt.Errorf("peer %s of level %d on the stall list of level %d", p.id, p.level, l)
			case p.prev != prev:
				return fmt.Errorf("peer %s: stall list back link broken", p.id)
			case prev != nil && p.since < prev.since:
				return fmt.Errorf("stall list out of order: %s since %v after %s since %v", p.id, p.since, prev.id, prev.since)
			case p.since > s.now:
				return fmt.Errorf("peer %s: since %v is in the future (%v)", p.id, p.since, s.now)
			}
			listed[p] = true
			prev = p
		}
		if s.stallTail[l] != prev {
			return fmt.Errorf("stall list %d: tail is not its last peer", l)
		}
	}
	for _, p := range s.peers {
		if listed[p] != (len(p.reqs) > 0) {
			return fmt.Errorf("peer %s: %d requests outstanding, on the stall list: %v", p.id, len(p.reqs), listed[p])
		}
	}
	// The watch list holds peers with requests outstanding that are
	// neither suspect nor fallback origins, once each, by since; a peer
	// that has such requests and is not on it was found not worth
	// suspecting since its clock last started (othersHave). nsuspect
	// counts the suspect peers.
	watched := map[*peer]bool{}
	var prev *peer
	for p := s.watchHead; p != nil; p = p.wnext {
		switch {
		case watched[p]:
			return fmt.Errorf("peer %s twice on the watch list", p.id)
		case p.gone || s.byID[p.id] != p:
			return fmt.Errorf("peer %s on the watch list is not connected", p.id)
		case len(p.reqs) == 0 || p.suspect || p.fallback:
			return fmt.Errorf("peer %s on the watch list: %d requests, suspect %v, fallback %v", p.id, len(p.reqs), p.suspect, p.fallback)
		case p.wprev != prev:
			return fmt.Errorf("peer %s: watch list back link broken", p.id)
		case prev != nil && p.since < prev.since:
			return fmt.Errorf("watch list out of order: %s since %v after %s since %v", p.id, p.since, prev.id, prev.since)
		}
		watched[p] = true
		prev = p
	}
	if s.watchTail != prev {
		return fmt.Errorf("watch list: tail is not its last peer")
	}
	nsus := 0
	for _, p := range s.peers {
		if p.suspect {
			nsus++
		}
	}
	if nsus != s.nsuspect {
		return fmt.Errorf("nsuspect %d, want %d", s.nsuspect, nsus)
	}
	if s.started && s.doneSent != (s.nheld == n) {
		return fmt.Errorf("doneSent=%v with %d of %d held", s.doneSent, s.nheld, n)
	}
	if len(s.dirty) != 0 || s.wakeAll {
		return fmt.Errorf("dirty=%d wakeAll=%v after the event", len(s.dirty), s.wakeAll)
	}
	// No peer with a free slot has anything it could be asked for.
	for _, p := range s.peers {
		if !s.canAsk(p) {
			continue
		}
		for i := range n {
			if s.pending.Has(i) && p.have.Has(i) && s.eligible(p, int32(i)) {
				return fmt.Errorf("peer %s has a free slot (%d/%d) but chunk %d is pending and eligible", p.id, len(p.reqs), p.window, i)
			}
		}
		if eg {
			for _, i := range s.inflight {
				if int(s.chunks[i].nreq) < s.cfg.MaxDuplicates && p.have.Has(int(i)) && !p.requesting(i) && s.eligible(p, i) {
					return fmt.Errorf("peer %s has a free slot in endgame but chunk %d could be duplicated", p.id, i)
				}
			}
		}
	}
	return nil
}
