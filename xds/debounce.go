package xds

import (
	"context"
	"time"
)

// debounce waits for a signal, then for a quiet period of holdOff without
// another signal, but no longer than maxDelay after the first signal. It
// reports false when ctx ends first. signals must be buffered (Notify drops
// a signal when one is already pending, which loses nothing: one pending
// signal means "the input changed since the last publish").
func debounce(ctx context.Context, signals <-chan struct{}, holdOff, maxDelay time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-signals:
	}
	first := time.Now()
	deadline := first.Add(maxDelay)
	timer := time.NewTimer(holdOff)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-signals:
			next := time.Now().Add(holdOff)
			if next.After(deadline) {
				next = deadline
			}
			timer.Reset(time.Until(next))
		}
	}
}
