package resend

import (
	"testing"
	"time"
)

const w = 10 * time.Second

func TestOffAlwaysYes(t *testing.T) {
	c := New[string, string](0)
	r := NewRound(2)
	for _, to := range []string{"a", "b", "c"} {
		if ok, forced := c.Claim("x", 0, r, to, time.Second, Request); !ok || forced {
			t.Fatalf("window off: claim for %s = %v, %v", to, ok, forced)
		}
	}
	if c.On() {
		t.Fatal("On with a zero window")
	}
}

// Without a round, only the window holds a chunk back, counted from the
// last claim (the end of the send).
func TestWindow(t *testing.T) {
	c := New[string, string](w)
	claim := func(to string, at time.Duration, kind Kind) bool {
		ok, _ := c.Claim("x", 0, nil, to, at, kind)
		return ok
	}
	if !claim("a", 0, Request) {
		t.Fatal("first request refused")
	}
	if !claim("a", 2*time.Second, Request) {
		t.Fatal("the same peer asking again was refused")
	}
	if !claim("a", 5*time.Second, Sent) {
		t.Fatal("Sent refused")
	}
	if claim("b", 14*time.Second, Request) {
		t.Fatal("another peer got the chunk within the window of the end of the send")
	}
	if !claim("b", 15*time.Second, Request) {
		t.Fatal("another peer was refused after the window")
	}
}

// During the first round a chunk sent to one peer goes to no other, however
// long ago, until every chunk has gone out once.
func TestFirstRound(t *testing.T) {
	c := New[int, string](w)
	r := NewRound(3)
	claim := func(i int, to string, at time.Duration) bool {
		ok, _ := c.Claim(i, i, r, to, at, Request)
		return ok
	}
	if !claim(0, "a", 0) || !claim(1, "a", time.Second) {
		t.Fatal("first copies refused")
	}
	// Keep the round busy (a send ends every few seconds) well past the
	// window.
	for at := 2 * time.Second; at < 4*w; at += 5 * time.Second {
		c.Claim(1, 1, r, "a", at, Sent)
		if claim(0, "b", at) {
			t.Fatalf("chunk 0 went to a second peer at %v, with chunk 2 never sent", at)
		}
	}
	if r.Done() {
		t.Fatal("round done with chunk 2 never sent")
	}
	if !claim(2, "c", 4*w) {
		t.Fatal("the last first copy was refused")
	}
	if !r.Done() {
		t.Fatal("round not done after every chunk went out")
	}
	if !claim(0, "b", 4*w+time.Second) {
		t.Fatal("a second copy was refused after the round, outside the window")
	}
	if claim(2, "d", 4*w+2*time.Second) {
		t.Fatal("the window no longer holds after the round")
	}
}

// An escalated request is served within the window and the first round,
// reports that it was forced, and finds the window's holder hoarding.
func TestEscalated(t *testing.T) {
	c := New[int, string](w)
	r := NewRound(3)
	c.Claim(0, 0, r, "a", 0, Request)
	c.Claim(0, 0, r, "a", time.Second, Sent)
	if ok, forced := c.Claim(0, 0, r, "b", 2*time.Second, Escalated); !ok || !forced {
		t.Fatalf("escalated within the window = %v, %v; want served, forced", ok, forced)
	}
	if !c.Hoarder("a", 3*time.Second) {
		t.Fatal("the peer the chunk went to is not a hoarder")
	}
	if c.Hoarder("a", 2*time.Second+HoardWindows*w) {
		t.Fatal("still a hoarder after HoardWindows windows")
	}
	if c.Hoarder("b", 3*time.Second) {
		t.Fatal("the escalating peer is a hoarder")
	}
	// Outside the window but in the first round: forced, and nobody is
	// found hoarding.
	c.Claim(1, 1, r, "c", 3*time.Second, Sent) // keeps the round busy
	if ok, forced := c.Claim(0, 0, r, "d", 2*time.Second+w+time.Second, Escalated); !ok || !forced {
		t.Fatalf("escalated in the first round = %v, %v; want served, forced", ok, forced)
	}
	if c.Hoarder("b", 2*time.Second+w+time.Second) {
		t.Fatal("a peer found hoarding outside the window")
	}
	if ok, forced := c.Claim(2, 2, r, "e", 3*time.Second+w, Escalated); !ok || forced {
		t.Fatalf("escalated request a plain one would get = %v, %v; want served, not forced", ok, forced)
	}
}

// A round with no send for HoardWindows windows is over: the next crowd
// gets a first round of its own, and meanwhile only the window holds.
func TestRoundExpires(t *testing.T) {
	c := New[int, string](w)
	r := NewRound(4)
	c.Claim(0, 0, r, "a", 0, Request)
	c.Claim(0, 0, r, "a", time.Second, Sent)
	idle := time.Second + HoardWindows*w
	if ok, _ := c.Claim(0, 0, r, "b", idle-time.Millisecond, Request); ok {
		t.Fatal("second copy served before the round went idle")
	}
	if ok, _ := c.Claim(0, 0, r, "b", idle, Request); !ok {
		t.Fatal("second copy refused once the round went idle")
	}
	if !r.Has(0) || r.Has(1) || r.Done() {
		t.Fatal("the new round does not hold just the chunk just sent")
	}
	if ok, _ := c.Claim(0, 0, r, "c", idle+w+time.Second, Request); ok {
		t.Fatal("the new round let a third copy go")
	}
}

func TestRoundBounds(t *testing.T) {
	r := NewRound(65)
	for _, i := range []int{-1, 65, 1000} {
		r.mark(i, time.Second)
		if r.Has(i) {
			t.Fatalf("Has(%d) on a round of 65", i)
		}
	}
	for i := range 65 {
		if r.Done() {
			t.Fatalf("done after %d of 65", i)
		}
		r.mark(i, time.Second)
		r.mark(i, time.Second) // twice counts once
	}
	if !r.Done() {
		t.Fatal("not done after all 65")
	}
}

// A chunk that repeats an earlier one is never sent by itself, so it must
// not hold the round open, in this round or the next.
func TestRoundSkip(t *testing.T) {
	c := New[int, string](w)
	r := NewRound(4)
	r.Skip(3) // chunk 3 repeats chunk 0
	r.Skip(3)
	r.Skip(9) // out of range: ignored
	at := time.Duration(0)
	// round sends chunks 0-2 to peer to, one a second, and checks that
	// only the last one ends the round.
	round := func(name, to string) {
		t.Helper()
		for i := range 3 {
			at += time.Second
			c.Claim(i, i, r, to, at, Request)
			if i < 2 && r.Done() {
				t.Fatalf("%s done after %d of 3 chunks", name, i+1)
			}
		}
		if !r.Done() {
			t.Fatalf("%s not done with every chunk but the repeat sent", name)
		}
	}
	round("first round", "a")
	// Idle for three windows: the next claim starts a new round, which
	// still leaves the repeat out.
	at += HoardWindows * w
	round("second round", "b")
}
