// Package ctxtime holds the waits every loop of the collector shares: a
// sleep that ends with its context and the periodic loops of the watchers
// and renewers. Keeping them in one place keeps their contract (a wait is a
// select on ctx.Done, never time.Sleep) the same everywhere.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, and reports whether ctx is still live.
// A d ≤ 0 does not wait at all.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Every calls f every period (which must be > 0) until ctx ends; the first
// call comes one period after the start. f runs on the caller's goroutine,
// so a slow f delays the next call rather than overlapping it.
func Every(ctx context.Context, period time.Duration, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// NowAndEvery calls f at once and then as Every does: the loop of the
// watchers that publish a state and must show it from the start.
func NowAndEvery(ctx context.Context, period time.Duration, f func()) {
	f()
	Every(ctx, period, f)
}
