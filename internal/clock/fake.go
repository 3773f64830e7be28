package clock

import (
	"context"
	"sync"
	"time"
)

// DefaultFakeStart is where NewFake starts when given the zero time.
var DefaultFakeStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Fake is a Clock whose time changes only through Advance. Timers and
// tickers fire, in order of their deadlines, during the Advance that
// reaches them. Like real tickers, a ticker whose value has not been
// received drops ticks rather than queue them. Safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
	// changed is closed and replaced whenever the set of pending waiters
	// changes, to wake WaitTimers.
	changed chan struct{}
}

// NewFake returns a Fake clock reading start (DefaultFakeStart if zero).
func NewFake(start time.Time) *Fake {
	if start.IsZero() {
		start = DefaultFakeStart
	}
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since returns f.Now().Sub(t).
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// NewTimer returns a timer that fires when the fake time reaches Now()+d.
// A d of zero or less fires at once.
func (f *Fake) NewTimer(d time.Duration) Timer {
	w := &fakeWaiter{f: f, c: make(chan time.Time, 1)}
	w.Reset(d)
	return w
}

// NewTicker returns a ticker with period d. It panics if d <= 0, like
// time.NewTicker.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	w := &fakeWaiter{f: f, c: make(chan time.Time, 1), period: d}
	w.resetTicker(d)
	return &fakeTicker{w}
}

// Advance moves the fake time forward by d, firing every timer and ticker
// whose deadline is reached, earliest first. A negative d panics.
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clock: negative Advance")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	target := f.now.Add(d)
	for {
		w := f.earliestLocked()
		if w == nil || w.when.After(target) {
			break
		}
		if w.when.After(f.now) {
			f.now = w.when
		}
		w.fire(f.now)
		if w.period > 0 {
			// Skip ticks that would fall before now, as a real ticker
			// whose reader is slow drops them.
			n := target.Sub(w.when)/w.period + 1
			w.when = w.when.Add(n * w.period)
		} else {
			f.removeLocked(w)
		}
	}
	f.now = target
}

// Timers returns the number of timers and tickers that are pending.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// WaitTimers blocks until at least n timers or tickers are pending, so a
// test can Advance knowing that the goroutine under test is waiting. It
// returns ctx.Err() if ctx ends first.
func (f *Fake) WaitTimers(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		have, ch := len(f.waiters), f.changed
		f.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *Fake) earliestLocked() *fakeWaiter {
	var e *fakeWaiter
	for _, w := range f.waiters {
		if e == nil || w.when.Before(e.when) {
			e = w
		}
	}
	return e
}

func (f *Fake) addLocked(w *fakeWaiter) {
	f.waiters = append(f.waiters, w)
	f.notifyLocked()
}

func (f *Fake) removeLocked(w *fakeWaiter) bool {
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			f.notifyLocked()
			return true
		}
	}
	return false
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// fakeWaiter is a pending timer or ticker (period > 0).
type fakeWaiter struct {
	f      *Fake
	c      chan time.Time
	when   time.Time
	period time.Duration
}

func (w *fakeWaiter) C() <-chan time.Time { return w.c }

// fire delivers t unless a previous value is still unread.
func (w *fakeWaiter) fire(t time.Time) {
	select {
	case w.c <- t:
	default:
	}
}

// drain drops an unread value, so no stale tick follows Stop or Reset.
func (w *fakeWaiter) drain() {
	select {
	case <-w.c:
	default:
	}
}

func (w *fakeWaiter) Stop() bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.drain()
	return w.f.removeLocked(w)
}

func (w *fakeWaiter) Reset(d time.Duration) bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.drain()
	active := w.f.removeLocked(w)
	if d <= 0 {
		w.fire(w.f.now)
		return active
	}
	w.when = w.f.now.Add(d)
	w.f.addLocked(w)
	return active
}

func (w *fakeWaiter) resetTicker(d time.Duration) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.drain()
	w.f.removeLocked(w)
	w.period = d
	w.when = w.f.now.Add(d)
	w.f.addLocked(w)
}

// fakeTicker hides the Timer methods of fakeWaiter behind the Ticker ones.
type fakeTicker struct{ w *fakeWaiter }

func (t *fakeTicker) C() <-chan time.Time { return t.w.c }
func (t *fakeTicker) Stop()               { t.w.Stop() }
func (t *fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	t.w.resetTicker(d)
}

var (
	_ Clock = (*Fake)(nil)
	_ Clock = realClock{}
)
