// Package clock abstracts time so that code which waits, expires or
// measures can be tested deterministically. Production code uses Real();
// tests use a Fake whose time moves only when Advance is called.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Since returns the time elapsed since t.
	Since(t time.Time) time.Duration
	// NewTimer returns a Timer that fires once after d.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a Ticker that fires every d. d must be positive.
	NewTicker(d time.Duration) Ticker
}

// Timer is the clock-agnostic form of *time.Timer, with Go 1.23 semantics:
// after Stop or Reset returns, no stale value is received from C.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the timer
	// was active.
	Stop() bool
	// Reset makes the timer fire after d. It reports whether the timer
	// was active.
	Reset(d time.Duration) bool
}

// Ticker is the clock-agnostic form of *time.Ticker.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	// Reset stops the ticker and restarts it with period d.
	Reset(d time.Duration)
}

// Real returns the Clock backed by package time.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                   { return time.Now() }
func (realClock) Since(t time.Time) time.Duration  { return time.Since(t) }
func (realClock) NewTimer(d time.Duration) Timer   { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }
func (t realTimer) C() <-chan time.Time            { return t.t.C }
func (t realTimer) Stop() bool                     { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool     { return t.t.Reset(d) }
func (t realTicker) C() <-chan time.Time           { return t.t.C }
func (t realTicker) Stop()                         { t.t.Stop() }
func (t realTicker) Reset(d time.Duration)         { t.t.Reset(d) }

type realTimer struct{ t *time.Timer }
type realTicker struct{ t *time.Ticker }

// Sleep waits for d on c, or until ctx ends, in which case it returns
// ctx.Err(). A d of zero or less returns at once (nil unless ctx has ended).
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
