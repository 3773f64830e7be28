package clock

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func received(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestFakeNowSince(t *testing.T) {
	f := NewFake(time.Time{})
	if !f.Now().Equal(DefaultFakeStart) {
		t.Fatalf("Now = %v, want %v", f.Now(), DefaultFakeStart)
	}
	start := f.Now()
	f.Advance(90 * time.Second)
	if got := f.Since(start); got != 90*time.Second {
		t.Fatalf("Since = %v, want 90s", got)
	}
}

func TestFakeTimer(t *testing.T) {
	f := NewFake(time.Time{})
	start := f.Now()
	tm := f.NewTimer(10 * time.Second)
	if f.Timers() != 1 {
		t.Fatalf("Timers = %d, want 1", f.Timers())
	}
	f.Advance(9 * time.Second)
	if _, ok := received(tm.C()); ok {
		t.Fatal("timer fired early")
	}
	f.Advance(5 * time.Second)
	got, ok := received(tm.C())
	if !ok {
		t.Fatal("timer did not fire")
	}
	if want := start.Add(10 * time.Second); !got.Equal(want) {
		t.Errorf("fired at %v, want its deadline %v", got, want)
	}
	if f.Timers() != 0 {
		t.Errorf("Timers after firing = %d, want 0", f.Timers())
	}
	if tm.Stop() {
		t.Error("Stop of a fired timer reported active")
	}
	if tm.Reset(time.Second) {
		t.Error("Reset of a fired timer reported active")
	}
	if !tm.Stop() {
		t.Error("Stop of a reset timer reported inactive")
	}
	f.Advance(time.Hour)
	if _, ok := received(tm.C()); ok {
		t.Error("stopped timer fired")
	}
}

func TestFakeTimerStopDropsStaleValue(t *testing.T) {
	f := NewFake(time.Time{})
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // fired, value unread
	tm.Reset(time.Minute)
	if _, ok := received(tm.C()); ok {
		t.Fatal("stale value received after Reset")
	}
	if _, ok := received(f.NewTimer(0).C()); !ok {
		t.Fatal("zero timer did not fire at once")
	}
}

func TestFakeTicker(t *testing.T) {
	f := NewFake(time.Time{})
	tk := f.NewTicker(time.Second)
	defer tk.Stop()
	for i := range 3 {
		f.Advance(time.Second)
		if _, ok := received(tk.C()); !ok {
			t.Fatalf("tick %d missing", i)
		}
	}
	// A long Advance delivers one tick, not a backlog.
	f.Advance(time.Minute)
	if _, ok := received(tk.C()); !ok {
		t.Fatal("tick missing after long Advance")
	}
	if _, ok := received(tk.C()); ok {
		t.Fatal("ticks queued up")
	}
	// The ticker stays on its grid.
	f.Advance(time.Second)
	if _, ok := received(tk.C()); !ok {
		t.Fatal("tick missing after grid step")
	}
	tk.Reset(10 * time.Second)
	f.Advance(5 * time.Second)
	if _, ok := received(tk.C()); ok {
		t.Fatal("reset ticker fired early")
	}
	tk.Stop()
	f.Advance(time.Hour)
	if _, ok := received(tk.C()); ok {
		t.Fatal("stopped ticker fired")
	}
	if f.Timers() != 0 {
		t.Fatalf("Timers = %d, want 0", f.Timers())
	}
}

func TestFakeFiresInDeadlineOrder(t *testing.T) {
	f := NewFake(time.Time{})
	start := f.Now()
	late := f.NewTimer(3 * time.Second)
	early := f.NewTimer(1 * time.Second)
	f.Advance(5 * time.Second)
	e, _ := received(early.C())
	l, _ := received(late.C())
	if !e.Equal(start.Add(time.Second)) || !l.Equal(start.Add(3*time.Second)) {
		t.Fatalf("fired at %v and %v", e.Sub(start), l.Sub(start))
	}
}

func TestFakeWaitTimers(t *testing.T) {
	f := NewFake(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, f, time.Minute) }()
	if err := f.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Minute)
	if err := <-done; err != nil {
		t.Fatalf("Sleep = %v", err)
	}

	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := f.WaitTimers(short, 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitTimers on a cancelled context = %v", err)
	}
}

func TestSleepCancelled(t *testing.T) {
	f := NewFake(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, f, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want Canceled", err)
	}
	if f.Timers() != 0 {
		t.Fatalf("Sleep left %d timers", f.Timers())
	}
	if err := Sleep(context.Background(), f, 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
}

func TestReal(t *testing.T) {
	c := Real()
	start := c.Now()
	if err := Sleep(context.Background(), c, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if c.Since(start) < time.Millisecond {
		t.Fatal("real clock did not move")
	}
	tk := c.NewTicker(time.Millisecond)
	<-tk.C()
	tk.Reset(time.Millisecond)
	<-tk.C()
	tk.Stop()
	tm := c.NewTimer(time.Hour)
	if !tm.Stop() {
		t.Fatal("Stop of a pending real timer reported inactive")
	}
	tm.Reset(time.Millisecond)
	<-tm.C()
}

func TestFakePanics(t *testing.T) {
	for name, fn := range map[string]func(f *Fake){
		"advance":      func(f *Fake) { f.Advance(-1) },
		"ticker":       func(f *Fake) { f.NewTicker(0) },
		"ticker reset": func(f *Fake) { f.NewTicker(time.Second).Reset(0) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			fn(NewFake(time.Time{}))
		})
	}
}
