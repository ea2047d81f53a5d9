package xds

import (
	"context"
	"testing"
	"time"
)

func TestDebounceBurstGivesFewPublishes(t *testing.T) {
	f := newFixture(t, baseResources(), func(o *ServerOptions) {
		o.HoldOff = 50 * time.Millisecond
		o.MaxDelay = time.Second
	})
	before := metricValue(f.srv.metrics.publishes)
	for range 1000 {
		f.srv.Notify()
	}
	f.waitPublishes(before + 1)
	// Another quiet period's worth of Notify-free time lets any straggler
	// publish happen before counting.
	time.Sleep(200 * time.Millisecond)
	if n := metricValue(f.srv.metrics.publishes) - before; n > 3 {
		t.Fatalf("1,000 Notify calls caused %v publishes, want at most 3", n)
	}
}

func TestDebounceNotifyFromManyGoroutines(t *testing.T) {
	f := newFixture(t, baseResources())
	before := metricValue(f.srv.metrics.publishes)
	done := make(chan struct{})
	for range 8 {
		go func() {
			for range 100 {
				f.srv.Notify()
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	f.waitPublishes(before + 1)
}

func TestDebounce(t *testing.T) {
	tests := map[string]struct {
		signal  bool // a signal is pending
		cancel  bool // ctx is cancelled before the call
		holdOff time.Duration
		want    bool
	}{
		"signal then quiet":        {signal: true, holdOff: time.Millisecond, want: true},
		"cancelled, no signal":     {cancel: true, holdOff: time.Millisecond},
		"cancelled during holdoff": {signal: true, cancel: true, holdOff: time.Hour},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sig := make(chan struct{}, 1)
			if tc.signal {
				sig <- struct{}{}
			}
			if tc.cancel {
				cancel()
			}
			if got := debounce(ctx, sig, tc.holdOff, tc.holdOff); got != tc.want {
				t.Fatalf("debounce = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDebounceMaxDelayBoundsAStream(t *testing.T) {
	// Signals keep arriving every millisecond for ever; the max delay must
	// end the wait anyway.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan struct{}, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				select {
				case sig <- struct{}{}:
				default:
				}
			}
		}
	}()
	if !debounce(ctx, sig, 50*time.Millisecond, 200*time.Millisecond) {
		t.Fatal("debounce returned false")
	}
}
